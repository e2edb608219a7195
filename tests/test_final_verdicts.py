"""Final verdicts: a cut attack is ``undecided``, never ``not leaked``; the deep pass and ``fl-sim audit`` settle it."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attacker.attacks import INVERSIONS
from attacker.attacks.ig import LABEL_SEARCH_SHARE, Variant, plan_attacks
from attacker.observation import Observation
from attacker.outcome import attack_runs, decide
from attacker.stop import Stop
from attacker.undecided import FOLDER, UndecidedStore
from attacker.victim import Victim
from fl_sim import events
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from fl_sim.reporting.compare import run_figures
from fl_sim.reporting.progress import RunProgress
from fl_sim.reporting.tidy import attack_rows
from fl_sim.results import load_events, read_events
from lab.deep_audit import audit_run
from lab.offline import intercepted_updates

from judging import judge_for
from local_grid import run_locally

#: Every client prunes (top-k, 99%): isolation applies and runs in milliseconds; pruned-isolation, SME, the FedAvg
#: attack and IG apply too and need longer; a budget of 10 ms per update cuts IG before it starts (pruned-isolation
#: too, at times). CPA does not apply: at 99% the kept entries cannot determine the layer (at 90% it would, and take
#: 25 s per update).
PRUNED_AND_CUT = {"defense.per-client": "topk:0,1,2", "defense.topk-prune-ratio": 0.99, "attack.enabled": True,
                  "attack.blocking": True, "attack.iterations": 40, "attack.budget-seconds": 0.01,
                  "attack.deep-budget-seconds": 0}


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory) -> Path:
    """A tiny run whose every pruned update had IG cut in its round (no deep pass): a copy per test."""
    from conftest import TINY

    config = RunConfig.from_flat({**TINY, **PRUNED_AND_CUT, "output.report": True, "output.tensorboard": True,
                                  "output.dir": str(tmp_path_factory.mktemp("cut") / "results")})
    return run_locally(config)


@pytest.fixture
def run_dir(cut_run, tmp_path) -> Path:
    """A fresh copy of the cut run (audits write into it)."""
    return Path(shutil.copytree(cut_run, tmp_path / cut_run.name))


def _attacks(run: Path) -> list[dict]:
    return [e for e in read_events(run) if e["event"] == "attack"]


def test_a_cut_attack_gives_undecided_never_not_leaked(cut_run):
    attacks = _attacks(cut_run)
    assert len(attacks) == 6
    for event in attacks:
        runs = {run["attack"]: run for run in event["runs"]}
        assert set(runs) == set(event["applied"]) == {"isolation", "pruned-isolation", "sme", "fedavg", "ig"}
        assert runs["isolation"]["complete"] and not runs["ig"]["complete"]
        assert event["verdict"] in ("leaked", "undecided")  # never "not leaked" with IG cut
        if event["verdict"] == "undecided":
            cut = [name for name, run in runs.items() if not run["complete"]]
            assert event["provisional"] is True and event["notes"][-1].startswith("undecided: nothing leaked, but ")
            assert all(name in event["notes"][-1] for name in cut)  # each cut attack is named
    undecided = [e for e in attacks if e["verdict"] == "undecided"]
    assert undecided, "the setting must leave updates undecided"
    assert len(UndecidedStore(cut_run).kept()) == len(undecided)
    summaries = [e for e in read_events(cut_run) if e["event"] == "attack-round"]
    assert sum(s["verdicts"]["undecided"] for s in summaries) == len(undecided)
    assert sum(s["verdicts"]["not leaked"] for s in summaries) == 0


def test_the_deep_pass_turns_provisional_verdicts_final_in_every_output(run_dir):
    before = _attacks(run_dir)
    console = io.StringIO()
    summary = audit_run(run_dir, unlimited=True, console=console)  # no limit: every attack runs in full
    assert summary.updates == sum(e["verdict"] == "undecided" for e in before) and summary.undecided == 0
    deep = [e for e in _attacks(run_dir) if e["phase"] == "deep"]
    assert len(deep) == summary.updates and all(e["verdict"] in ("leaked", "not leaked") for e in deep)
    for event in deep:
        assert all(run["complete"] for run in event["runs"]) or event["verdict"] == "leaked"
    assert not (run_dir / FOLDER).exists()
    standing = events.standing_attacks(load_events(run_dir))
    assert len(standing) == 6 and all(e.phase == "deep" or e.verdict == "leaked" for e in standing)
    final = Counter(e.verdict for e in standing)
    # progress (report, console, compare) and the tidy table count the superseding verdicts, once per update
    progress = RunProgress.from_events(load_events(run_dir))
    assert progress.verdicts()["undecided"] == 0 and progress.provisional() == 0
    assert {k: v for k, v in progress.verdicts().items() if v} == dict(final)
    figures = run_figures(run_dir)
    assert (figures.updates_leaked, figures.updates_not_leaked, figures.updates_undecided) == (
        final["leaked"], final["not leaked"], 0)
    rows = attack_rows(read_events(run_dir))
    updates = {(r["round"], r["node_id"]) for r in rows}
    assert len(updates) == 6 and not any(r["verdict"] == "undecided" for r in rows)
    assert {r["phase"] for r in rows if r["attack"].startswith("ig")} >= {"deep"}
    assert "(deep pass)" in (run_dir / "report.html").read_text()
    line = console.getvalue().splitlines()[-1]
    assert line.startswith(f"deep pass: {summary.updates} undecided updates attacked on in ")
    assert "(no limit)" in line and "; 0 still undecided" in line
    log = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    log.Reload()  # the final verdicts join the run's log: the round's verdicts counted with them, superseded
    assert {name: log.Scalars(f"final/{name}")[-1].value for name in ("leaked", "not leaked", "undecided")} == {
        "leaked": final["leaked"], "not leaked": final["not leaked"], "undecided": 0}


def test_the_runs_own_deep_pass_settles_what_its_rounds_left(tiny_config):
    config = tiny_config.with_overrides({**PRUNED_AND_CUT, "num-server-rounds": 1, "attack.deep-budget-seconds": 120})
    run = run_locally(config)
    attacks = _attacks(run)
    provisional = [e for e in attacks if e["phase"] == "round" and e["verdict"] == "undecided"]
    deep = [e for e in attacks if e["phase"] == "deep"]
    assert provisional and len(deep) == len(provisional) and all(e["verdict"] != "undecided" for e in deep)
    passes = [e for e in read_events(run) if e["event"] == "deep-pass"]
    assert len(passes) == 1 and passes[0]["undecided"] == 0 and passes[0]["budget_seconds"] == 120
    assert not (run / FOLDER).exists()
    assert [e["event"] for e in read_events(run)][-1] == "run-end"  # the pass is part of the run


def test_a_pass_cut_by_its_budget_leaves_updates_kept_and_undecided(run_dir):
    summary = audit_run(run_dir, budget_seconds=0.001)
    assert summary.undecided == summary.updates > 0
    assert len(UndecidedStore(run_dir).kept()) == summary.updates
    assert RunProgress.from_events(load_events(run_dir)).verdicts()["not leaked"] == 0


def test_fl_sim_audit_resumes_after_sigkill_without_losing_or_repeating_a_verdict(run_dir):
    kept = {k.key for k in UndecidedStore(run_dir).kept()}
    command = [sys.executable, "-m", "lab.cli", "audit", str(run_dir), "--no-limit"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if any(e.get("phase") == "deep" for e in _attacks(run_dir)):
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_with = sum(e.get("phase") == "deep" for e in _attacks(run_dir))
    assert 0 < killed_with < len(kept), "the kill must land inside the pass"
    # a verdict written but not yet released (a kill between the two) must not be redone either
    written = {(e["round"], e["node_id"], e["partition_id"]) for e in _attacks(run_dir) if e.get("phase") == "deep"}
    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode == 0
    finals = Counter((e["round"], e["node_id"], e["partition_id"]) for e in _attacks(run_dir)
                     if e.get("phase") == "deep")
    assert set(finals) == kept and all(count == 1 for count in finals.values()), (killed_with, finals)
    assert written <= set(finals) and not (run_dir / FOLDER).exists()


def test_a_verdict_written_before_a_kill_released_its_update_is_not_redone(run_dir):
    backup = run_dir.parent / "kept-backup"
    shutil.copytree(run_dir / FOLDER, backup)
    audit_run(run_dir, unlimited=True)
    written = len(_attacks(run_dir))
    shutil.copytree(backup, run_dir / FOLDER)  # as if killed after every verdict, before any release
    again = audit_run(run_dir, unlimited=True)
    assert again.updates == 0 and len(_attacks(run_dir)) == written and not (run_dir / FOLDER).exists()


def test_a_label_search_cannot_take_more_than_its_share():
    """The replay's label search (up to 256 replays) is charged to IG and stops at its share of the budget."""
    flat = {"data.image-size": 16, "train.batch-size": 4, "train.local-steps": 4, "defense.per-client": ""}
    config = RunConfig.from_flat(flat)
    updates, _ = intercepted_updates(config, [list(range(20, 36))])
    obs = Observation.from_update(updates[0], "none")
    dataset = load_dataset(config.data)
    victim = Victim.from_arrays(Architecture.of(config, dataset.input_shape, dataset.num_classes), obs.global_arrays,
                                torch.device("cpu"))
    from attacker.attacks import AttackSettings

    settings = AttackSettings.from_config(config.attack, seed=0).for_method("ig")
    unbounded_start = time.perf_counter()
    plan_attacks(victim, [(obs, Variant(tv=0.01))], settings, Stop())
    unbounded = time.perf_counter() - unbounded_start
    budget = unbounded / 2  # a quarter of this is less than half the search it would otherwise run
    stop = Stop(budget)
    plan = plan_attacks(victim, [(obs, Variant(tv=0.01))], settings, stop)[0]
    one_replay = unbounded / 256
    assert plan.setup_seconds <= LABEL_SEARCH_SHARE * budget + 4 * one_replay + 0.05
    assert not stop.spent and any(note.startswith("label search:") and "cut" in note for note in plan.notes)


def test_decide_counts_a_leak_whatever_was_cut_and_not_leaked_only_in_full():
    """The three outcomes from one real update: judged by the real judge, with a run in full and one cut."""
    flat = {"data.image-size": 16, "train.batch-size": 1, "train.local-steps": 1, "defense.per-client": "",
            "model.width": 64}
    config = RunConfig.from_flat(flat)
    updates, _ = intercepted_updates(config, [[5]])
    obs = Observation.from_update(updates[0], "none")
    dataset = load_dataset(config.data)
    victim = Victim.from_arrays(Architecture.of(config, dataset.input_shape, dataset.num_classes), obs.global_arrays,
                                torch.device("cpu"))
    from attacker.attacks import AttackSettings

    settings = AttackSettings.from_config(config.attack, seed=0).for_method("ig", iterations=30)
    judge = judge_for(config.data)
    cut = INVERSIONS["ig"].run(victim, [obs], settings, Stop(1e-9))[0]
    full = INVERSIONS["ig"].run(victim, [obs], settings, Stop())[0]
    assert not cut.complete and full.complete
    exact = INVERSIONS["isolation"].run(victim, [obs], settings, Stop())[0]
    truth = judge(exact.images, exact.labels, held=[5])
    assert truth.leaked  # one image through an MLP: read back exactly
    assert decide(truth, attack_runs(cut, ["ig"])) == events.LEAKED
    missed = judge(full.images.flip(-1) * 0, full.labels, held=[5])
    assert decide(missed, attack_runs(full, ["ig"])) == events.NOT_LEAKED
    assert decide(missed, attack_runs(cut, ["ig"])) == events.UNDECIDED
    assert decide(None, attack_runs(full, ["ig"])) == events.NO_GROUND_TRUTH


def test_old_runs_stay_readable(tmp_path):
    """An ``attack`` event written before verdicts could be undecided reads back and counts by its success."""
    line = {"event": "attack", "time": 1.0, "round": 1, "node_id": 3, "partition_id": 0, "method": "ig", "attack": "ig",
            "iterations": 10, "seconds": 1.0, "device": "cpu", "images": 1, "labels": [1], "loss": 0.1,
            "label_accuracy": 1.0, "per_image": None, "success": False, "image": None, "notes": [], "portfolio": None}
    event = events.parse(json.loads(json.dumps(line)))
    progress = RunProgress()
    progress.add(event)
    assert progress.verdicts()["not leaked"] == 1 and event.runs is None and event.phase is None
