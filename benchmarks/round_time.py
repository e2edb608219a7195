"""Does the attack stall training? Median round wall time with the attack off vs on (background).

Runs the default job (digits, 10 clients) for a few rounds, in one command, these ways: attack
off; Inverting Gradients in the background worker (the default, `attack.blocking=false`) with the
server's default torch threads (`attack.threads=0`: the cores the clients leave free) and with
every core (`attack.threads` = this machine's cores), for contrast; and, with ``--blocking``, IG
inside the round. Prints the median and max seconds per round from each run's metrics.csv (round
1 includes Ray's start-up), the whole command's wall time, which includes waiting for pending
attacks at the end, cut at `attack.end-budget-seconds`, and the rounds attacked or cut.

    python benchmarks/round_time.py [--rounds 5] [--iterations 4800] [--budget 60] [--blocking]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fl_sim import events
from fl_sim.results import load_events


def run(out: Path, run_id: str, rounds: int, extra: list[str]) -> dict:
    """Run `fl-sim run` once; return its round times, wall time and attack counts."""
    command = [str(Path(sys.executable).parent / "fl-sim"), "run", "--rounds", str(rounds), "--out", str(out),
               "--run-id", run_id, *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    with open(out / run_id / "metrics.csv") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle) if int(row["round"]) > 0]
    run = load_events(out / run_id)
    return {"median": statistics.median(seconds), "max": max(seconds), "wall": wall,
            "attacked_rounds": sum(isinstance(e, events.AttackRound) for e in run),
            "cut_rounds": sum(isinstance(e, events.AttackCut) for e in run)}


def main() -> None:
    """Run the three variants and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=4800)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--blocking", action="store_true", help="also attack inside the round (slow)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    out = Path(tempfile.mkdtemp(prefix="fl-sim-round-time-"))
    attack = ["--set", "attack.enabled=true", "--set", "attack.method=ig",
              "--set", f"attack.iterations={args.iterations}", "--set", f"attack.end-budget-seconds={args.budget}"]
    variants = {
        "attack off": [],
        "background, auto threads": attack,
        f"background, {cores} threads": [*attack, "--set", f"attack.threads={cores}"],
        **({"blocking, auto threads": [*attack, "--set", "attack.blocking=true"]} if args.blocking else {}),
    }
    print(f"default job, 10 clients, {args.rounds} rounds; IG {args.iterations} iterations; "
          f"end-of-run budget {args.budget:.0f} s")
    print(f"{'variant':26} {'median round s':>15} {'max round s':>12} {'command s':>10} "
          f"{'rounds attacked':>16} {'cut':>4}")
    for name, extra in variants.items():
        r = run(out, name.replace(" ", "-").replace(",", ""), args.rounds, extra)
        print(f"{name:26} {r['median']:>15.2f} {r['max']:>12.2f} {r['wall']:>10.1f} {r['attacked_rounds']:>16} "
              f"{r['cut_rounds']:>4}")


if __name__ == "__main__":
    main()
