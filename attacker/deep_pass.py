"""The deep pass: the updates whose round verdict was ``undecided``, attacked on to a final verdict.

In the rounds, every update shares the round's budget (``attack.budget-seconds`` per update), and an attack that
applies may be cut before the end of its setting; such an update is ``undecided`` and kept
(:mod:`attacker.undecided`). After the last round, the deep pass takes them on within a total budget
(``attack.deep-budget-seconds``; ``fl-sim audit`` on a finished or interrupted run, with a budget of its own): a
round's kept updates at a time, all their attacks together within what is left of the total, on the Ray pool where
``attack.workers`` > 0, on the GPU where there is one. Each update's new verdict is an ``attack`` event of phase
``deep``, which supersedes its round's; one that is final (leaked, or not leaked with every attack run in full)
releases the kept update, one still undecided stays kept for a later pass.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Container

from attacker.assessor import Assessor
from attacker.judge import Judge
from attacker.reporter import Reporter
from attacker.runner import AttackRunner
from attacker.stop import Stop
from attacker.undecided import UndecidedStore
from fl_sim import events, protocol


def finished_updates(run_events: list[events.Event]) -> set[tuple]:
    """The updates whose final verdict a deep pass already wrote (a pass killed before it released them)."""
    return {e.update_key for e in run_events
            if isinstance(e, events.Attack) and e.phase == events.DEEP_PHASE and e.verdict != events.UNDECIDED}


def deep_pass(store: UndecidedStore, runner: AttackRunner, assessor: Assessor, reporter: Reporter, judge: Judge | None,
              budget_seconds: float | None, finished: Container[tuple] = (),
              run_stop: Stop | None = None) -> events.DeepPass:
    """Attack every kept update within ``budget_seconds`` in all (None: no limit); write its verdicts and the summary.

    ``finished``: the keys of updates whose final verdict is already written (:func:`finished_updates`); they are
    released, not attacked again.
    """
    start = time.perf_counter()
    total = Stop(budget_seconds or 0.0, parent=run_stop)
    verdicts: Counter = Counter()
    kept = store.kept()
    for done in [k for k in kept if k.key in finished]:
        store.release(done)
    waiting = [k for k in kept if k.key not in finished]
    undecided = 0
    for _, group in itertools.groupby(waiting, key=lambda k: k.observation.server_round):
        group = list(group)
        if total.spent:
            undecided += len(group)
            continue
        observations = [k.observation for k in group]
        helds = [k.audit.get(protocol.AUDIT_SAMPLES) for k in group]
        per_update = total.remaining() * runner.parallel / len(group) if budget_seconds else 0.0
        attempt = runner.run(observations, helds, judge, per_update, total)
        for index, kept_update in enumerate(group):
            if index in attempt.failed:
                reporter.error(kept_update.observation.server_round, 1, attempt.failed[index],
                               f" (deep pass, partition {kept_update.observation.partition_id})")
                undecided += 1
                continue
            obs, found = kept_update.observation, attempt.found.get(index)
            assessment = assessor.assess(judge, attempt.victim, obs, found, kept_update.audit,
                                         attempt.reasons[index], attempt.judged, bank=False)
            outcome = reporter.report(obs, found, assessment, phase=events.DEEP_PHASE, keep=True)
            verdicts[outcome.verdict] += 1
            if outcome.verdict == events.UNDECIDED:
                undecided += 1
            else:
                store.release(kept_update)
        runner.release_memory()
    summary = events.DeepPass(updates=len(waiting), verdicts=dict(verdicts), undecided=undecided,
                              seconds=round(time.perf_counter() - start, 3), budget_seconds=budget_seconds,
                              device=str(runner.device))
    reporter.writer.emit(summary)
    return summary
