"""The privacy-utility-communication table of the defenses, measured in real Flower runs.

For each defense row:
- utility: the default job (digits, 10 IID clients, DLG LeNet, Adam, 2 local epochs, 20
  rounds) with the defense applied: final test accuracy and mean bytes uploaded per client
  per round;
- privacy: the attack setting, ``--clients`` (10) clients on Ray, plain SGD (lr 0.1), batch size 1, with one
  local step (``fedsgd``, the papers' setting) or several (``multistep``), every update
  attacked (blocking) with ig, idlg and analytic on the MLP (whose first layer is linear: the
  known hole in PRECODE), and with ``auto``, the worst case of the defense-aware portfolio (on
  the LeNet); success = SSIM >= 0.6. ``--iterations`` sets the Adam steps of ig and auto.

Rows: none, noise (two strengths), topk (two ratios), precode, dgp, precode+dgp. Each finished
row is appended to ``--csv`` at once, so an interrupted run keeps what it measured.

With ``--secagg-clients 2 4 8`` it measures instead what secure aggregation leaves the server: FedSGD (one image
per client), that many clients per round, no defense, ``auto`` on the LeNet and on the MLP, within
``--budget`` seconds per attacked update, once with Flower's SecAgg+ (one attack on the round's aggregate: the
sum holds as many images as clients) and once without (an attack on every client's own update). The success
rate is the images identified above chance over the images the round's updates hold (``--secagg-csv``).

    python benchmarks/defense_table.py [--settings fedsgd multistep] [--attack-rounds 1] [--csv FILE]
        [--attacks ig idlg analytic-mlp auto] [--iterations N]
        [--utility-from EARLIER.csv]   # reuse the utility columns of an earlier table instead of rerunning
    python benchmarks/defense_table.py --secagg-clients 2 4 8 [--budget 30] [--secagg-csv FILE]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from fl_sim import events
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD, PAPERS
from fl_sim.results import load_events
from lab.simulation import simulate

from csv_rows import RowLog

DEFENSES = {
    "none": {},
    "noise 1e-3": {"defense.name": "noise", "defense.noise-std": 1e-3},
    "noise 1e-2": {"defense.name": "noise", "defense.noise-std": 1e-2},
    "topk 50%": {"defense.name": "topk", "defense.topk-prune-ratio": 0.5},
    "topk 90%": {"defense.name": "topk", "defense.topk-prune-ratio": 0.9},
    "precode": {"precode.enabled": True},
    "dgp": {"defense.name": "dgp"},
    "precode+dgp": {"precode.enabled": True, "defense.name": "dgp"},
}
SETTINGS = {
    "fedsgd": {**PAPERS, "train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1},
    "multistep": {**PAPERS, "train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 5},
}
ATTACKS = {"ig": {}, "idlg": {}, "analytic-mlp": {"model.name": "mlp", "attack.method": "analytic"}, "auto": {}}
UTILITY_FIELDS = ["final_accuracy", "upload_bytes_per_round", "dense_bytes_per_round"]
FIELDS = ["setting", "defense", "attack", "success_rate", "mean_ssim", "label_accuracy", "final_accuracy",
          "upload_bytes_per_round", "dense_bytes_per_round", "attacked_images", "leaked_by", "seconds"]


def _run(flat: dict, out: Path) -> list[events.Event]:
    """The events of a simulated run of ``flat``, written under ``out``."""
    config = RunConfig.from_flat({**flat, "output.dir": str(out)})
    return load_events(simulate(config))


def utility(defense: dict, out: Path) -> dict:
    """Final accuracy and mean upload bytes per client per round of the default job with ``defense``."""
    run = _run(defense, out)
    rounds = [e for e in run if isinstance(e, events.Round) and e.round > 0]
    train = [e for e in run if isinstance(e, events.ClientTrain)]
    return {"final_accuracy": rounds[-1].test_accuracy,
            "upload_bytes_per_round": statistics.mean(e.upload_bytes for e in train),
            "dense_bytes_per_round": statistics.mean(e.dense_bytes for e in train)}


def privacy(setting: dict, defense: dict, attack: str, rounds: int, iterations: int, clients: int,
            out: Path) -> dict:
    """Attack success rate, mean SSIM and label accuracy of ``attack`` on every update of the runs."""
    flat = {**setting, **defense, "attack.method": attack, **ATTACKS[attack], "num-server-rounds": rounds,
            "attack.enabled": True, "attack.blocking": True, "server.fraction-evaluate": 0.0,
            "attack.iterations": iterations, "simulation.num-clients": clients}
    attacks = [e for e in _run(flat, out) if isinstance(e, events.Attack)]
    images = [image for e in attacks for image in e.per_image]
    winners = Counter(e.attack for e in attacks if e.success)
    return {"success_rate": sum(i.leaked for i in images) / len(images),
            "mean_ssim": statistics.mean(i.ssim for i in images),
            "label_accuracy": statistics.mean(e.label_accuracy for e in attacks),
            "attacked_images": len(images), "leaked_by": " ".join(f"{k}:{n}" for k, n in winners.most_common())}


SECURE_FIELDS = ["model", "clients_per_round", "aggregation", "attack_events", "images_held", "images_leaked",
                 "success_rate", "mean_ssim", "leaked_by", "seconds"]


def secure_privacy(model: str, clients: int, secagg: bool, budget: float, out: Path) -> dict:
    """What ``auto`` identifies in one FedSGD round of ``clients`` clients, with or without SecAgg+."""
    flat = {**FEDSGD, "model.name": model, "num-server-rounds": 1, "simulation.num-clients": clients,
            "server.min-train-nodes": clients, "server.min-available-nodes": clients, "secagg.enabled": secagg,
            "attack.enabled": True, "attack.blocking": True, "attack.method": "auto", "attack.budget-seconds": budget,
            "server.fraction-evaluate": 0.0}
    attacks = [e for e in _run(flat, out) if isinstance(e, events.Attack)]
    images = [image for e in attacks for image in e.per_image or []]
    held = sum(e.held or 0 for e in attacks)
    winners = Counter(e.attack for e in attacks if e.success)
    return {"attack_events": len(attacks), "images_held": held, "images_leaked": sum(i.leaked for i in images),
            "success_rate": sum(i.leaked for i in images) / held if held else float("nan"),
            "mean_ssim": statistics.mean(i.ssim for i in images) if images else float("nan"),
            "leaked_by": " ".join(f"{k}:{n}" for k, n in winners.most_common())}


def secure_rows(clients_per_round: list[int], budget: float, path: Path) -> None:
    """The SecAgg+ rows beside the no-SecAgg ones, by model and clients per round."""
    out = Path(tempfile.mkdtemp(prefix="fl-sim-secagg-"))
    with RowLog(path, SECURE_FIELDS) as table:
        for model in ("lenet", "mlp"):
            for clients in clients_per_round:
                for secagg in (False, True):
                    start = time.perf_counter()
                    row = secure_privacy(model, clients, secagg, budget, out)
                    table.add({"model": model, "clients_per_round": clients,
                               "aggregation": "SecAgg+" if secagg else "no SecAgg", **row,
                               "seconds": round(time.perf_counter() - start, 1)})


def main() -> None:
    """Measure every row and print the table as it grows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    parser.add_argument("--attack-rounds", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=0, help="attack.iterations (0 = published defaults)")
    parser.add_argument("--clients", type=int, default=10, help="clients of the attacked runs")
    parser.add_argument("--csv", type=Path, default=Path("defense_table.csv"))
    parser.add_argument("--utility-from", type=Path, help="CSV of an earlier run whose utility columns to reuse")
    parser.add_argument("--secagg-clients", type=int, nargs="+", help="measure the SecAgg+ rows at these clients "
                                                                        "per round instead")
    parser.add_argument("--budget", type=float, default=30.0, help="SecAgg+ rows: attack seconds per update")
    parser.add_argument("--secagg-csv", type=Path, default=Path("secagg_table.csv"))
    args = parser.parse_args()
    if args.secagg_clients:
        secure_rows(args.secagg_clients, args.budget, args.secagg_csv)
        return
    earlier = {}
    if args.utility_from:
        with open(args.utility_from, newline="") as handle:
            earlier = {row["defense"]: {key: float(row[key]) for key in UTILITY_FIELDS}
                       for row in csv.DictReader(handle)}
    out = Path(tempfile.mkdtemp(prefix="fl-sim-defenses-"))
    with RowLog(args.csv, FIELDS) as table:
        for name in args.defenses:
            start = time.perf_counter()
            useful = earlier.get(name) or utility(DEFENSES[name], out)
            for setting in args.settings:
                for attack in args.attacks:
                    row = {"setting": setting, "defense": name, "attack": attack, **useful,
                           **privacy(SETTINGS[setting], DEFENSES[name], attack, args.attack_rounds,
                                   args.iterations, args.clients, out),
                           "seconds": round(time.perf_counter() - start, 1)}
                    table.add(row)


if __name__ == "__main__":
    main()
