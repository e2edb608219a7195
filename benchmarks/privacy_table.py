"""DP-SGD at three privacy budgets next to the other defenses, and a robust aggregator, under the worst case.

Defense rows (``--defenses``): privacy is ``auto``'s worst case (the defense-aware portfolio)
on ``--clients`` FedSGD updates (plain SGD lr 0.1, one step on one image, DLG's LeNet, digits);
utility is the default job (20 rounds, 10 clients, Adam, 2 local epochs) with the defense on:
final accuracy, and for DP-SGD the epsilon the run's privacy ledger logged (most of any client,
delta 1e-5). DP-SGD rows are given by the epsilon a client may spend over the default job (or the
job with ``--dp-set`` training settings, e.g. DP-SGD's usual plain SGD with larger batches); the
noise multiplier that budget needs there (Opacus) is used in both measurements, with per-sample
gradients clipped to 1.

Aggregator rows (``--aggregators``): robust aggregation decides what enters the global model,
not what the server sees. The same attack runs in real Flower runs on Ray (``--agg-clients``
clients, FedSGD, 2 rounds, every update attacked by ``ig``) under FedAvg and under each
aggregator, and the default job gives each aggregator's accuracy.

    python benchmarks/privacy_table.py [--defenses ...] [--clients 4] [--iterations 500]
        [--aggregators krum] [--dp-set train.optimizer=sgd ...] [--utility-from EARLIER.csv] [--csv FILE]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

import torch
from defense_table import DEFENSES, UTILITY_FIELDS

from fl_sim import events, privacy
from fl_sim.config import RunConfig, parse_assignment
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_client_data
from fl_sim.results import load_events
from lab.simulation import simulate

from csv_rows import RowLog
from worst_case import attack_worst_case

#: DP-SGD rows: the epsilon a client may spend over the default job (delta 1e-5).
DP_EPSILONS = (8.0, 3.0, 1.0)
#: Robust aggregators and what they need of the round (Krum: n >= 2f + 3 updates).
AGGREGATORS = {"krum": {"strategy.name": "krum", "server.min-train-nodes": 3},
               "fedtrimmedavg": {"strategy.name": "fedtrimmedavg"},
               "fedmedian": {"strategy.name": "fedmedian"}}
FIELDS = ["row", "clients_leaked", "mean_ssim", "leaked_by", "final_accuracy", "epsilon_spent",
          "noise_multiplier"]


def dp_defense(epsilon: float, training: dict) -> dict:
    """DP-SGD settings (with ``training``) and the noise multiplier they need.

    The multiplier is what a default-job client needs to stay within ``epsilon`` under that training.
    """
    target = RunConfig.from_flat({**training, "defense.name": "dpsgd", "defense.dpsgd-target-epsilon": epsilon})
    typical = len(load_client_data(target.data, 0, target.simulation.num_clients, target.seed).train)
    return {**training, "defense.name": "dpsgd",
            "defense.dpsgd-noise-multiplier": privacy.noise_multiplier(target, typical)}


def worst_case_privacy(defense: dict, clients: int, iterations: int) -> dict:
    """Clients leaked, mean SSIM and winning attacks of ``auto`` on FedSGD updates under ``defense``."""
    found = attack_worst_case({**FEDSGD, **defense}, clients, iterations, time_ig=False)
    scores = [verdict.images[0].scores.ssim for verdict in found.best_verdicts]
    winners = sorted({rec.attack for rec, v in zip(found.best, found.best_verdicts) if v.leaked})
    return {"clients_leaked": f"{sum(v.leaked for v in found.best_verdicts)}/{clients}",
            "mean_ssim": statistics.mean(scores), "leaked_by": " ".join(winners) or "-"}


def run_privacy(flat: dict, clients: int, iterations: int, out: Path) -> dict:
    """Clients leaked (over all attacked updates) and mean SSIM of ``ig`` in a real 2-round run of ``flat``."""
    config = RunConfig.from_flat({**FEDSGD, **flat, "num-server-rounds": 2, "simulation.num-clients": clients,
                                  "attack.enabled": True, "attack.method": "ig", "attack.blocking": True,
                                  "attack.iterations": iterations, "server.fraction-evaluate": 0.0,
                                  "output.dir": str(out)})
    attacks = [e for e in load_events(simulate(config)) if isinstance(e, events.Attack)]
    leaked = sum(e.success for e in attacks)
    return {"clients_leaked": f"{leaked}/{len(attacks)}", "leaked_by": "ig" if leaked else "-",
            "mean_ssim": statistics.mean(i.ssim for e in attacks for i in e.per_image)}


def utility(flat: dict, rounds: int, out: Path) -> dict:
    """Final accuracy of the default job (``rounds`` rounds) with ``flat``, and the most epsilon spent.

    The epsilon is the most any DP-SGD client spent.
    """
    run = load_events(simulate(RunConfig.from_flat({**flat, "num-server-rounds": rounds, "output.dir": str(out)})))
    spent = [e.epsilon for e in run if isinstance(e, events.Privacy)]
    return {"final_accuracy": [e for e in run if isinstance(e, events.Round)][-1].test_accuracy,
            "epsilon_spent": max(spent) if spent else "-"}


def main() -> None:
    """Measure every row and print the table as it grows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rows = {**{name: flat for name, flat in DEFENSES.items()},
            **{f"dpsgd eps={eps:g}": None for eps in DP_EPSILONS}}
    parser.add_argument("--defenses", nargs="+", default=["none", "noise 1e-2", "topk 90%", "dgp", "precode",
                                                          *[f"dpsgd eps={eps:g}" for eps in DP_EPSILONS]],
                        choices=list(rows))
    parser.add_argument("--aggregators", nargs="*", default=["krum"], choices=list(AGGREGATORS))
    parser.add_argument("--clients", type=int, default=4, help="FedSGD updates attacked per defense row")
    parser.add_argument("--agg-clients", type=int, default=4, help="clients of the aggregator runs")
    parser.add_argument("--iterations", type=int, default=500, help="Adam steps of the attacks' optimisations")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the utility job (the default job: 20)")
    parser.add_argument("--dp-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="training settings of the DP-SGD rows' utility job, e.g. train.optimizer=sgd "
                             "train.lr=1.0 train.batch-size=64 (the attack keeps FedSGD)")
    parser.add_argument("--utility-from", type=Path, help="defense_table.py CSV whose final accuracy to reuse")
    parser.add_argument("--csv", type=Path, default=Path("privacy_table.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    earlier = {}
    if args.utility_from:
        with open(args.utility_from, newline="") as handle:
            earlier = {row["defense"]: float(row[UTILITY_FIELDS[0]]) for row in csv.DictReader(handle)}
    out = Path(tempfile.mkdtemp(prefix="fl-sim-privacy-"))
    measured = {name: {"final_accuracy": accuracy, "epsilon_spent": "-"} for name, accuracy in earlier.items()}
    with RowLog(args.csv, FIELDS) as table:
        for name in args.defenses:
            training = dict(parse_assignment(text) for text in args.dp_set)
            defense = rows[name] if rows[name] is not None else dp_defense(float(name.split("=")[1]), training)
            measured.setdefault(name, utility(defense, args.rounds, out))
            attacked = {key: value for key, value in defense.items() if not key.startswith("train.")}
            table.add({"row": name, **worst_case_privacy(attacked, args.clients, args.iterations), **measured[name],
                       "noise_multiplier": defense.get("defense.dpsgd-noise-multiplier", "-")})
        for name in (["fedavg"] if args.aggregators else []) + args.aggregators:
            aggregator = AGGREGATORS.get(name, {})
            useful = measured.get("none") if name == "fedavg" else None  # FedAvg's job is the "none" row's
            table.add({"row": f"{name} (real run, ig)", **run_privacy(aggregator, args.agg_clients, args.iterations,
                                                                       out),
                       **(useful or utility(aggregator, args.rounds, out)), "noise_multiplier": "-"})


if __name__ == "__main__":
    main()
