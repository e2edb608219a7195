"""Interrupted runs leave a valid results directory marked ``interrupted``; resuming continues them exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fl_sim.errors import ConfigError
from fl_sim.plugins import ServerPlugin
from fl_sim.results import load_checkpoint, read_events, read_metrics, read_summary

from local_grid import run_locally

BIN = Path(sys.executable).parent


class StopInRound(ServerPlugin):
    """Stands for Ctrl-C arriving while round ``at`` is being aggregated."""

    name = "ctrl-c"

    def __init__(self, at: int) -> None:
        self.at = at

    def on_round_end(self, server_round):
        """Stop the process at the chosen round."""
        if server_round == self.at:
            raise KeyboardInterrupt


def test_resume_continues_exactly_where_the_run_stopped(tiny_config, tmp_path):
    full = tiny_config.with_overrides({"num-server-rounds": 3, "output.dir": str(tmp_path / "full")})
    reference = torch.load(run_locally(full) / "model.pt")

    config = tiny_config.with_overrides({"num-server-rounds": 3, "output.run-id": "cut"})
    with pytest.raises(KeyboardInterrupt):
        run_locally(config, StopInRound(at=2))
    run_dir = Path(config.output.dir) / "cut"
    assert read_summary(run_dir)["status"] == "interrupted"
    assert read_summary(run_dir)["last_completed_round"] == 1
    assert load_checkpoint(run_dir)[0] == 1 and not (run_dir / "model.pt").exists()

    run_locally(config, resume=True)
    resumed = torch.load(run_dir / "model.pt")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)  # bit-identical to the uninterrupted run
    assert [row["round"] for row in read_metrics(run_dir)] == [0, 1, 2, 3]
    full_summary = read_summary(next(Path(full.output.dir).iterdir()))
    for key in ("status", "rounds", "final_test_accuracy", "best_test_accuracy"):
        assert read_summary(run_dir)[key] == full_summary[key]
    kinds = [e["event"] for e in read_events(run_dir) if e["event"].startswith("run-")]
    assert kinds == ["run-start", "run-end", "run-resumed", "run-end"]


def test_resume_refuses_what_it_cannot_continue(tiny_config, tmp_path):
    done = run_locally(tiny_config.with_overrides({"output.run-id": "done"}))
    with pytest.raises(ConfigError, match="already completed its 2 rounds"):
        run_locally(tiny_config.with_overrides({"output.run-id": "done"}), resume=True)
    (done / "checkpoint.pt").unlink()
    with pytest.raises(ConfigError, match="has no checkpoint.pt to resume from"):
        run_locally(tiny_config.with_overrides({"output.run-id": "done"}), resume=True)
    cli = subprocess.run([str(BIN / "fl-sim"), "run", "--resume", str(tmp_path)], capture_output=True, text=True)
    assert cli.returncode == 2 and "is not a results directory" in cli.stderr


@pytest.mark.e2e
def test_sigterm_marks_the_run_interrupted_and_resume_finishes_it(tmp_path):
    """A real `fl-sim run` on Ray, stopped by SIGTERM in round 2, then resumed to the end."""
    slow_rounds = ["--set", "attack.enabled=true", "--set", "attack.method=ig", "--set", "attack.blocking=true",
                   "--set", "attack.iterations=200"]
    command = [str(BIN / "fl-sim"), "run", "--clients", "3", "--rounds", "4", "--out", str(tmp_path), "--run-id",
               "r", "--set", "data.image-size=16", "--set", "train.local-steps=2", *slow_rounds]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "r"
    deadline = time.time() + 180
    while time.time() < deadline and not any(e["event"] == "round" and e["round"] == 1
                                             for e in read_events(run_dir)):
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"resume with: fl-sim run --resume {run_dir}" in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["last_completed_round"] >= 1

    done = subprocess.run([str(BIN / "fl-sim"), "run", "--resume", str(run_dir)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_summary(run_dir)["status"] == "completed"
    assert [row["round"] for row in read_metrics(run_dir)] == [0, 1, 2, 3, 4]
    attacked = {(e["round"], e["partition_id"]) for e in read_events(run_dir) if e["event"] == "attack"}
    assert attacked == {(r, p) for r in range(1, 5) for p in range(3)}


@pytest.mark.parametrize("every, lost", [(1, [2, 4]), (2, []), (3, [4])])
def test_resume_records_the_attacks_the_stop_lost(tmp_path, every, lost):
    from attacker.plugin import AttackerPlugin
    from fl_sim.config import RunConfig
    from fl_sim.models import Architecture
    from fl_sim.results import ResultsWriter

    config = RunConfig.from_flat({"attack.enabled": True, "attack.blocking": True, "attack.every": every,
                                  "output.dir": str(tmp_path), "output.run-id": "r"})
    writer = ResultsWriter.create(config)
    from fl_sim import events

    earlier = [events.AttackRound(round=1, method="ig", clients=1, clients_judged=1, clients_leaked=0,
                                  client_success_rate=0.0, images=1, images_leaked=0, image_success_rate=0.0,
                                  label_accuracy=1.0, best_ssim=0.1, median_ssim=0.1, best_psnr=10.0,
                                  median_psnr=10.0, seconds=1.0, device="cpu", queue=0),
               events.AttackTimeout(round=3, method="ig", clients=1, seconds=1.0, error="spent")]
    plugin = AttackerPlugin(config, writer, judge=None, architecture=Architecture.of(config, (1, 32, 32), 10))
    assert plugin.account_for_earlier_rounds(earlier, done=4) == lost
    cut = [e for e in read_events(writer.directory) if e["event"] == "attack-cut"]
    assert [e["round"] for e in cut] == lost and all("cannot be redone" in e["reason"] for e in cut)
    writer.close()
