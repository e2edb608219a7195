"""Top-k and DGP against the attacks on pruned uploads: where each defense holds and where it breaks.

Per cell (a pruning defense at a pruning level), a real Flower federation (the Simulation Engine on Ray) of
``--clients`` clients, every one running the cell's defense, on the main job's data, MLP and training (digits,
16 plain SGD steps of 8 images at lr 0.1 per round, ``--rounds`` rounds); with ``--fedsgd`` the papers' setting
instead (one SGD step on one image). Every update of every round is attacked, as the server received it, by each
attack of ``--attacks`` that applies to it, at its published setting (``isolation``; ``pruned-isolation``, which
uses the pruning's bounds; ``across-rounds``, the same on a DGP client's uploads summed over its rounds, which hold
what its error feedback delayed; in FedSGD also ``analytic``, ``ig`` and ``idlg``; ``cpa`` only where the kept
entries determine the layer), and judged against the client's images.

Printed per cell: the images leaked of the images held for each attack and for the strongest (per update, the
attack that leaked most), the updates leaked, each attack's seconds per update (median, max), the federation's
test accuracy after its last round (what the defense costs) and the bytes a client uploads per round.

Cells: top-k at 50, 90 and 99% pruned; DGP at the same levels with the top ratio at 0, 5, 10 and 20% and the bottom
ratio the rest (``dgp-90-10``: 90% pruned, the largest 10% and the smallest 80%). The main job's clients run
``topk-90`` and ``dgp-90-10``.

    python benchmarks/pruning_table.py [--cells topk-90 dgp-90-10 ...] [--clients 6] [--rounds 15]
        [--fedsgd] [--attacks isolation pruned-isolation across-rounds analytic ig idlg]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from attacker.across_rounds import UploadSums
from attacker.attacks import INVERSIONS, AttackSettings
from attacker.judge import Judge
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim import protocol
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from fl_sim.plugins import InterceptedUpdate, ServerPlugin
from fl_sim.reporting.progress import RunProgress
from fl_sim.results import load_events
from lab.simulation import simulate

LEVELS = (0.5, 0.9, 0.99)
TOP_RATIOS = (0.0, 0.05, 0.1, 0.2)


def cells() -> dict[str, dict]:
    """Every cell of the table by name, as the settings its clients run."""
    found = {f"topk-{round(level * 100)}": {"defense.name": "topk", "defense.topk-prune-ratio": level}
             for level in LEVELS}
    for level in LEVELS:
        for top in TOP_RATIOS:
            found[f"dgp-{round(level * 100)}-{round(top * 100)}"] = {
                "defense.name": "dgp", "defense.dgp-top-ratio": top, "defense.dgp-bottom-ratio": round(level - top, 4)}
    return found


class AttackEveryUpdate(ServerPlugin):
    """Attacks every update, as the server received it, with each attack that applies; keeps what the judge says."""

    name = "pruning-table"

    def __init__(self, config: RunConfig, attacks: list[str]) -> None:
        dataset = load_dataset(config.data)
        self.architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
        self.judge = Judge.of_dataset(dataset, config.attack, seed=0)
        self.settings = AttackSettings.from_config(config.attack, seed=0)
        self.attacks, self.defense = attacks, config.defense
        self.victim: Victim | None = None
        self.sums = UploadSums()
        #: per update: {attack: (images leaked, seconds)} for the attacks that applied, and the images held
        self.updates: list[tuple[dict[str, tuple[int, float]], int]] = []

    def on_update(self, update: InterceptedUpdate) -> None:
        """Attack ``update`` with every attack of the table that applies, and judge each result."""
        obs = self.sums.with_sum(Observation.under(update, self.defense), self.defense)
        held = update.audit[protocol.AUDIT_SAMPLES]
        self.victim = Victim.for_round(self.victim, self.architecture, obs.global_arrays, torch.device("cpu"))
        found = {}
        for name in self.attacks:
            attack = INVERSIONS[name]
            if attack.why_not(self.victim, obs) is not None:
                continue
            entry = attack.entry
            settings = self.settings.for_method(name, iterations=entry.iterations, lr=entry.lr)
            start = time.perf_counter()
            [rec] = attack.run(self.victim, [obs], settings)
            found[name] = (self.judge(rec.images, rec.labels, held).images_leaked, time.perf_counter() - start)
        self.updates.append((found, len(set(held))))


def measure(name: str, settings: dict, args: argparse.Namespace, attacks: list[str]) -> dict:
    """Run one cell's federation with every update attacked; its figures."""
    out = Path(tempfile.mkdtemp(prefix="fl-sim-pruning-"))
    config = RunConfig.from_flat({
        **settings, "simulation.num-clients": args.clients, "num-server-rounds": args.rounds,
        "defense.per-client": "", "output.dir": str(out), "output.run-id": name,
        # the run's own attacker only for the clients' audit (their images, for the judge): isolation, round 1
        "attack.method": "isolation", "attack.every": args.rounds + 1,
        **({"train.local-steps": 1, "train.batch-size": 1} if args.fedsgd else {})})
    table = AttackEveryUpdate(config, attacks)
    start = time.perf_counter()
    run_dir = simulate(config, plugins=lambda _config, _writer: [table])
    wall = time.perf_counter() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    progress = RunProgress.from_events(load_events(run_dir))
    held = sum(count for _, count in table.updates)
    row = {"cell": name, "updates": len(table.updates), "held": held, "accuracy": summary["final_test_accuracy"],
           "bytes": (progress.mean_upload_bytes() or 0) / args.clients, "wall": wall}
    for attack in attacks:
        ran = [found[attack] for found, _ in table.updates if attack in found]
        row[attack] = (sum(leaked for leaked, _ in ran), sum(leaked > 0 for leaked, _ in ran), len(ran),
                       statistics.median(s for _, s in ran) if ran else 0.0, max((s for _, s in ran), default=0.0))
    strongest = [max((leaked for leaked, _ in found.values()), default=0) for found, _ in table.updates]
    row["strongest"] = (sum(strongest), sum(leaked > 0 for leaked in strongest))
    return row


def main() -> None:
    """Measure the cells asked for and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=list(cells()), choices=list(cells()))
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--fedsgd", action="store_true", help="one SGD step on one image per client and round")
    parser.add_argument("--attacks", nargs="+", default=["isolation", "pruned-isolation", "across-rounds"],
                        choices=list(INVERSIONS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    attacks = args.attacks
    print(f"{'fedsgd' if args.fedsgd else 'main job training'}, {args.clients} clients x {args.rounds} rounds; "
          f"images leaked / held (updates leaked / attacked), seconds per update median / max")
    header = f"{'cell':11} {'strongest':>17} " + " ".join(f"{a:>34}" for a in attacks) + \
        f" {'accuracy':>8} {'bytes/upload':>12}"
    print(header)
    for name in args.cells:
        row = measure(name, cells()[name], args, attacks)
        held = row["held"]
        strongest = f"{row['strongest'][0]}/{held} ({row['strongest'][1]}/{row['updates']})"
        columns = " ".join(f"{leaked}/{held} ({hit}/{ran}) {median:.2f}/{most:.2f} s".rjust(34)
                           for leaked, hit, ran, median, most in (row[a] for a in attacks))
        print(f"{name:11} {strongest:>17} {columns} {row['accuracy']:8.4f} {row['bytes']:12,.0f}", flush=True)


if __name__ == "__main__":
    main()
