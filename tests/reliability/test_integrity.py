"""What a run directory guarantees under faults.

One writer, whole event lines, no duplicated rows, resume where the directory is, atomic images.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from attacker.images import save_grid
from fl_sim import events
from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError
from fl_sim.results import EVENTS, LOCK, METRICS, ResultsWriter, read_events, read_metrics, resume_config

ROUND_3 = events.Round(round=3, clients=2, train_loss=None, train_accuracy=None, eval_loss=None, eval_accuracy=None,
                       test_loss=2.0, test_accuracy=0.3, samples=64, seconds=0.5)
RUN_END = events.RunEnd(status="completed", rounds=4, last_completed_round=3, final_test_accuracy=0.3,
                        final_test_loss=2.0, best_test_accuracy=0.3)


@pytest.fixture
def run_dir(tmp_path):
    """A closed run directory with a config, two events and metrics rows for rounds 0-3."""
    writer = ResultsWriter.create(RunConfig.from_flat({"output.dir": str(tmp_path), "output.run-id": "r"}))
    writer.emit(events.RunStart(run_dir=str(writer.directory), rounds=4, from_round=0))
    for server_round in range(4):
        writer.metrics_row({"round": server_round, "test_accuracy": 0.1 * server_round})
    writer.emit(ROUND_3)
    writer.close()
    return writer.directory


def test_a_directory_has_one_writer(run_dir):
    first = ResultsWriter.reopen(run_dir)
    with pytest.raises(ConfigError, match="being written by this process"):
        ResultsWriter.reopen(run_dir)
    first.close()
    with open(run_dir / LOCK) as held:  # another open file description: as another process would hold it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="being written by another fl-sim process"):
            ResultsWriter.reopen(run_dir)
    ResultsWriter.reopen(run_dir).close()  # free again


def test_two_runs_racing_for_one_new_directory_cannot_both_start(tmp_path):
    config = RunConfig.from_flat({"output.dir": str(tmp_path), "output.run-id": "same"})
    first = ResultsWriter.create(config)
    with pytest.raises(ConfigError, match="being written by this process"):
        ResultsWriter.create(config)
    first.close()
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        ResultsWriter.create(config)


def test_a_killed_writer_leaves_no_stale_lock(run_dir):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; handle = open(sys.argv[1], 'w'); fcntl.flock(handle, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), str(run_dir / LOCK)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match="another fl-sim process"):
        ResultsWriter.reopen(run_dir)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    ResultsWriter.reopen(run_dir).close()


def test_reopen_cuts_a_torn_event_line_so_the_next_event_is_whole(run_dir):
    with open(run_dir / EVENTS, "a") as handle:
        handle.write('{"event": "attack", "round": 3, "per_im')  # a crash mid-append
    writer = ResultsWriter.reopen(run_dir)
    writer.emit(events.RunResumed(run_dir=str(run_dir), rounds=4, from_round=3))
    writer.close()
    assert [e["event"] for e in read_events(run_dir)] == ["run-start", "round", "run-resumed"]
    assert all(json.loads(line) for line in (run_dir / EVENTS).read_text().splitlines())


def test_a_failed_append_leaves_no_torn_line(run_dir, monkeypatch):
    writer = ResultsWriter.reopen(run_dir)
    before = (run_dir / EVENTS).read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        writer.emit(events.AttackCut(round=4, clients=3, reason="the test's"))
    monkeypatch.undo()
    assert (run_dir / EVENTS).read_bytes() == before
    writer.emit(RUN_END)
    writer.close()
    assert [e["event"] for e in read_events(run_dir)][-1] == "run-end"


def test_resume_drops_metrics_rows_past_the_checkpoint(run_dir):
    ResultsWriter.reopen(run_dir, last_round=2).close()
    assert [row["round"] for row in read_metrics(run_dir)] == [0, 1, 2]
    writer = ResultsWriter.reopen(run_dir, last_round=2)
    writer.metrics_row({"round": 3, "test_accuracy": 0.5})
    writer.close()
    assert [row["round"] for row in read_metrics(run_dir)] == [0, 1, 2, 3]


def test_resume_of_a_copy_writes_into_the_copy(run_dir, tmp_path):
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(run_dir, copy)
    config = resume_config(copy)
    assert (config.output.dir, config.output.run_id) == (str(copy.parent.resolve()), "copy")
    assert (run_dir / METRICS).read_text() == (copy / METRICS).read_text()


def test_reconstruction_images_are_whole_or_absent(tmp_path, monkeypatch):
    images = torch.rand(2, 1, 8, 8)
    save_grid(tmp_path / "round-1" / "client-0.png", images, images)
    assert [p.name for p in (tmp_path / "round-1").iterdir()] == ["client-0.png"]

    def crash(tensor, path, **kwargs):
        open(path, "wb").close()  # a write cut short: zero bytes
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("attacker.images.save_image", crash)
    with pytest.raises(OSError):
        save_grid(tmp_path / "round-1" / "client-1.png", images, images)
    assert [p.name for p in (tmp_path / "round-1").iterdir()] == ["client-0.png"]


def test_a_full_disk_during_a_run_is_one_line(monkeypatch, capsys):
    from lab import cli

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "results/r/events.jsonl")
    monkeypatch.setattr(cli, "_run", disk_full)
    assert cli.main(["run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'results/r/events.jsonl' (No space left on device)" in err
