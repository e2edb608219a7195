"""A run's verdicts counted from its ``events.jsonl``: per defense, provisional (the rounds') and final (standing).

Prints, per client defense, the updates leaked / not leaked / undecided / other as the rounds judged them and as
they stand after every deep pass (``fl-sim audit`` included), the wall time of the rounds and of each deep pass,
and the final test accuracy. For the main job: ``make run``, then

    python benchmarks/verdict_counts.py results/<run-id>
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from fl_sim import events
from fl_sim.results import load_events

COLUMNS = (events.LEAKED, events.NOT_LEAKED, events.UNDECIDED, events.NO_ATTACK_APPLIES, events.NO_GROUND_TRUTH)


def _table(title: str, attacks: list[events.Attack]) -> list[str]:
    """One line per defense: its updates per verdict."""
    counts: dict[str, Counter] = {}
    for attack in attacks:
        counts.setdefault(attack.defense or "?", Counter())[attack.verdict or "?"] += 1
    lines = [f"{title:12s} {'defense':10s} " + " ".join(f"{c:>17s}" for c in COLUMNS)]
    for defense, found in sorted(counts.items()):
        lines.append(f"{'':12s} {defense:10s} " + " ".join(f"{found[c]:17d}" for c in COLUMNS))
    return lines


def main(run_dir: Path) -> None:
    """Print the figures of ``run_dir``."""
    run_events = load_events(run_dir)
    start = next(e.time for e in run_events if isinstance(e, events.RunStart))
    rounds = [e for e in run_events if isinstance(e, events.Round) and e.round > 0]
    attack_rounds = [e for e in run_events if isinstance(e, events.AttackRound)]
    round_attacks = [e for e in run_events if isinstance(e, events.Attack) and e.phase != events.DEEP_PHASE]
    print("\n".join(_table("provisional", round_attacks)))
    print("\n".join(_table("final", events.standing_attacks(run_events))))
    last_round = max([e.time for e in rounds] + [e.time for e in attack_rounds], default=start)
    print(f"rounds and their attacks   {last_round - start:.1f} s ({len(rounds)} rounds)")
    for deep in (e for e in run_events if isinstance(e, events.DeepPass)):
        budget = "no limit" if deep.budget_seconds is None else f"{deep.budget_seconds:g} s"
        print(f"deep pass                  {deep.seconds:.1f} s ({budget}): {deep.updates} updates, "
              f"{deep.verdicts}, {deep.undecided} still undecided")
    if rounds:
        print(f"final test accuracy        {rounds[-1].test_accuracy:.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
