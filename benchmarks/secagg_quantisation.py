"""What SecAgg+'s quantisation does to the aggregate: its mean against the plain weighted mean of the same updates.

Two simulated runs of one round each with the same seed, so that the clients train the same updates: one plain
(the plugins see every client's update, whose weighted mean is the reference) and one under SecAgg+ (they see
the unmasked mean). Printed per ``secagg.max-weight``: the largest absolute error on the weights, and the error
relative to the round's mean update (what an attack on the aggregate inverts).

    python benchmarks/secagg_quantisation.py [--clients 3] [--max-weights 1000 60] [--overrides key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fl_sim.config import RunConfig, parse_assignment
from fl_sim.plugins import InterceptedUpdate, ServerPlugin
from lab.simulation import simulate


class Keeper(ServerPlugin):
    """Keeps the round's updates (a secure run's one aggregate, a plain run's every client update)."""

    name = "keeper"

    def __init__(self) -> None:
        self.updates: list[InterceptedUpdate] = []

    def on_update(self, update: InterceptedUpdate) -> None:
        """Keep the update."""
        self.updates.append(update)


def seen(config: RunConfig) -> list[InterceptedUpdate]:
    """The updates the plugins see in one round of ``config``."""
    keeper = Keeper()
    simulate(config, plugins=lambda cfg, writer: [keeper])
    return keeper.updates


def weighted_mean(updates: list[InterceptedUpdate]) -> dict[str, np.ndarray]:
    """FedAvg's mean of the clients' weights, in float64."""
    total = sum(u.num_examples for u in updates)
    return {name: sum(u.client_arrays[name].astype(np.float64) * u.num_examples for u in updates) / total
            for name in updates[0].client_arrays}


def main() -> None:
    """Print the aggregate's quantisation error per max-weight."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--max-weights", type=float, nargs="+", default=[1000.0, 60.0])
    parser.add_argument("--overrides", nargs="*", default=[], help="run-config key=value pairs")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="fl-sim-quantisation-"))
    flat = {"num-server-rounds": 1, "simulation.num-clients": args.clients, "server.fraction-evaluate": 0.0,
            "output.report": False, "output.dir": str(out), "defense.per-client": "",
            **dict(parse_assignment(pair) for pair in args.overrides)}
    plain = seen(RunConfig.from_flat(flat))
    reference = weighted_mean(plain)
    global_arrays = plain[0].global_arrays
    step = np.concatenate([(reference[n] - global_arrays[n]).ravel() for n in reference])
    samples = [u.num_examples for u in plain]
    print(f"{args.clients} clients, samples {samples}, {step.size} weights; mean update: largest |entry| "
          f"{np.abs(step).max():.3g}, L2 norm {np.linalg.norm(step):.3g}")
    print("max-weight | largest |error| | mean |error| | error L2 / update L2")
    for max_weight in args.max_weights:
        (aggregate,) = seen(RunConfig.from_flat({**flat, "secagg.enabled": True, "secagg.max-weight": max_weight}))
        error = np.concatenate([(aggregate.client_arrays[n] - reference[n]).ravel() for n in reference])
        print(f"{max_weight:g} | {np.abs(error).max():.3g} | {np.abs(error).mean():.3g} | "
              f"{np.linalg.norm(error) / np.linalg.norm(step):.3g}")


if __name__ == "__main__":
    main()
