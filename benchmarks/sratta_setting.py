"""Neuron isolation in SRATTA's own setting, as far as it fits here: the share of each client's samples recovered.

SRATTA (Dimitrov-style cross-silo FedAvg, ICML 2023; owkin/SRATTA ``configurations/cifar10.yaml``): a ReLU
fully connected network of 1,000 neurons, batches of 8, 5 local updates per round at lr 0.1, 100 samples per
client, 20 rounds. Here: digits at 32x32, ``--clients`` clients of the default IID partition (13 give each
about 100 training samples), the same network, batches, steps, learning rate and rounds, every update attacked
by ``isolation`` alone. The table gives, per round, the share of all clients' training samples the judge has
found leaked in some round so far (distinct samples, from the events' ``leaked_samples``), and the samples the
attacker itself has confirmed (its ``client_confirmed``: read back in two rounds or more, without the ground
truth).

    python benchmarks/sratta_setting.py [--clients 13] [--rounds 20]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict

import torch

from fl_sim.config import RunConfig
from fl_sim.results import read_events
from lab.simulation import simulate

#: SRATTA's CIFAR-10 configuration, on this project's keys.
SRATTA = {"model.name": "mlp", "model.width": 1000, "model.depth": 1, "model.init": "default",
          "train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 8, "train.local-steps": 5,
          "defense.per-client": "", "attack.enabled": True, "attack.method": "isolation", "attack.blocking": True,
          "output.report": False}


def main() -> None:
    """Run the federation and print the recovered share per round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=13)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        config = RunConfig.from_flat({**SRATTA, "simulation.num-clients": args.clients,
                                      "num-server-rounds": args.rounds, "output.dir": out})
        events = read_events(simulate(config))
    samples = {e["partition_id"]: e["num_examples"] for e in events if e["event"] == "client-train"}
    leaked: dict[int, set[int]] = defaultdict(set)
    confirmed: dict[int, int] = {}
    total = sum(samples.values())
    print(f"{args.clients} clients, {total} training samples ({total / args.clients:.0f} per client), "
          f"{args.rounds} rounds of 5 SGD steps on batches of 8, MLP 1000, isolation on every update")
    print("| round | samples leaked so far (judge) | share | samples the attacker confirmed | seconds per update |")
    print("|---|---|---|---|---|")
    for server_round in range(1, args.rounds + 1):
        attacks = [e for e in events if e["event"] == "attack" and e["round"] == server_round]
        for e in attacks:
            leaked[e["partition_id"]].update(e["leaked_samples"] or [])
            confirmed[e["partition_id"]] = e["client_confirmed"] or 0
        found = sum(len(s) for s in leaked.values())
        seconds = sum(e["seconds"] for e in attacks) / max(1, len(attacks))
        print(f"| {server_round} | {found} | {found / total:.1%} | {sum(confirmed.values())} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
