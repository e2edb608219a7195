"""End-to-end: real Flower runs on tiny settings (Simulation Engine on Ray, `flwr run .`, the CLI)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from fl_sim.plugins import ServerPlugin
from fl_sim.results import read_events
from lab.simulation import simulate

from conftest import TINY
from spy import Spy

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e
#: The fixed port of the SuperLink that `flwr run` starts for local simulations.
LOCAL_SUPERLINK_PORT = 39091


class Exploder(ServerPlugin):
    """A plugin with a bug: it raises on every update."""

    name = "exploder"

    def on_update(self, update):
        """Raise, as a buggy plugin would."""
        raise ValueError("plugin bug")


def _check_results(run_dir: Path, rounds: int, clients: int) -> list[dict]:
    for name in ("config.json", "events.jsonl", "metrics.csv", "model.pt", "summary.json"):
        assert (run_dir / name).is_file(), name
    events = read_events(run_dir)
    train = [e for e in events if e["event"] == "client-train"]
    assert sorted((e["round"], e["partition_id"]) for e in train) == [
        (r, p) for r in range(1, rounds + 1) for p in range(clients)]
    assert all(e["num_examples"] > 0 and e["train_seconds"] > 0 for e in train)
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["round"]) for r in rows] == list(range(rounds + 1))
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == rounds
    assert set(torch.load(run_dir / "model.pt")) >= {"classifier.weight", "classifier.bias"}
    return events


def test_simulation_on_ray_intercepts_and_attacks_every_update_under_fedprox(tiny_config):
    recorder = Spy()
    config = tiny_config.with_overrides({"attack.enabled": True, "attack.iterations": 30,
                                         "strategy.name": "fedprox", "train.proximal-mu": 0.1})
    run_dir = simulate(config, plugins=lambda config, writer: [Exploder(), recorder])
    events = _check_results(run_dir, rounds=2, clients=3)
    every_update = [(r, p) for r in (1, 2) for p in range(3)]
    assert sorted(recorder.seen) == every_update
    assert {update.train_config["proximal-mu"] for update in recorder.updates} == {0.1}  # and the replay uses it
    assert [e["round"] for e in events if e["event"] == "plugin-error"] == [1, 2]
    assert json.loads((run_dir / "config.json").read_text())["simulation.num-clients"] == 3
    attacks = [e for e in events if e["event"] == "attack"]
    assert sorted((e["round"], e["partition_id"]) for e in attacks) == every_update
    assert all(e["per_image"] and (run_dir / e["image"]).is_file() for e in attacks)
    assert [e["round"] for e in events if e["event"] == "attack-round"] == [1, 2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "fl-sim"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_run_writes_results(tmp_path):
    overrides = [f"--set={key}={value}" for key, value in TINY.items() if key not in
                 ("num-server-rounds", "simulation.num-clients")]
    done = _cli("run", "--clients", "3", "--rounds", "1", "--out", "out", "--run-id", "cli", *overrides, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round  1/1" in done.stdout and f"results: {tmp_path / 'out' / 'cli'}" in done.stdout
    _check_results(tmp_path / "out" / "cli", rounds=1, clients=3)


@pytest.mark.parametrize("args, message", [
    (["--set", "train.lrr=1"], "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
    (["--model", "vgg"], "config key 'model.name' must be one of lenet, convnet, flower-cnn, femnist-cnn, "
     "mlp, resnet18"),
    (["--dataset", "cifar10", "--data-root", "nowhere"], "cifar10 not found under 'nowhere'"),
    (["--clients", "2000"], "2000 clients need at least 4000 training samples"),
    (["--config", "missing.toml"], "config file 'missing.toml' does not exist"),
])
def test_cli_user_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    done = _cli("run", "--out", "out", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("fl-sim: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def _flwr_run(tmp_path: Path, run_config: str) -> Iterator[tuple[subprocess.CompletedProcess, Path]]:
    """`fl-sim flwr-run` of this app with 3 SuperNodes; the process and the results directory (output.run-id flwr).

    Afterwards, the local SuperLink is stopped if this run started it (and checked to be stopped).
    """
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr-home"), "FLWR_DISABLE_UPDATE_CHECK": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    superlink_was_up = _port_open(LOCAL_SUPERLINK_PORT)
    try:
        done = subprocess.run([str(BIN / "fl-sim"), "flwr-run", "--app", str(ROOT), "--run-config",
                               f"{run_config} output.dir='out' output.run-id='flwr'",
                               "--", "--federation-config", "num-supernodes=3"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        yield done, tmp_path / "out" / "flwr"  # output.dir is the user's, not Flower's runtime's, directory
        assert not list((tmp_path / "flwr-home").glob("runtime-envs/*"))  # the app ran in this environment
        if not superlink_was_up:
            assert "the local SuperLink that flwr started for this run was stopped" in done.stdout
            assert not _port_open(LOCAL_SUPERLINK_PORT)
    finally:
        if not superlink_was_up:  # should the wrapper have failed to, stop the SuperLink this test started
            subprocess.run(["pkill", "-f", f"flower-superlink.*{tmp_path}"], check=False)


def test_flwr_run_uses_the_pyproject_app_and_says_where_the_results_went(tmp_path):
    """`fl-sim flwr-run` (`flwr run . --stream` on Flower's managed local SuperLink) with run-config overrides.

    The default job's attack runs on a pool of one Ray worker: under `flwr run` the pool starts Ray before
    Flower's simulation backend, which then runs the clients on that same Ray.
    """
    with _flwr_run(tmp_path, "num-server-rounds=2 data.image-size=16 train.local-steps=2 attack.workers=1") as (
            done, run_dir):
        assert done.stdout.splitlines()[-1].startswith(f"results: {run_dir}")
        events = _check_results(run_dir, rounds=2, clients=3)
        assert sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "attack") == [
            (r, p) for r in (1, 2) for p in range(3)]
        assert all(e["verdict"] in ("leaked", "not leaked") for e in events if e["event"] == "attack")
        config = json.loads((run_dir / "config.json").read_text())
        assert config["train.local-steps"] == 2 and config["data.image-size"] == 16


def test_flwr_run_with_secagg_attacks_only_each_rounds_aggregate(tmp_path):
    """SecAgg+ (Flower's legacy workflow and client mod) on the Simulation Engine: one attack per round, on the sum."""
    with _flwr_run(tmp_path, "num-server-rounds=1 data.image-size=16 train.local-steps=1 train.batch-size=1 "
                             "secagg.enabled=true defense.per-client='dgp:2'") as (_, run_dir):
        events = _check_results(run_dir, rounds=1, clients=3)
        attacks = [e for e in events if e["event"] == "attack"]
        assert [(e["round"], e["node_id"], e["clients"], e["held"]) for e in attacks] == [(1, 0, 3, 3)]
        aggregates = [e for e in events if e["event"] == "secure-aggregate"]
        assert [(e["clients"], e["densified"]) for e in aggregates] == [(3, [2])]


@pytest.mark.parametrize("run_config, message", [
    ("attack.method='IG'",
     "config key 'attack.method' must be one of auto, ig, idlg, dlg, analytic, isolation, pruned-isolation, "
     "across-rounds, feature-isolation, cpa, sme, fedavg; got 'IG'"),
    ("train.lrr=0.1", "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
    ("train.lr=0.1 oops", "--run-config: 'oops' is not a key=value pair"),
])
def test_flwr_run_refuses_a_bad_run_config_in_one_line_before_flower_starts(tmp_path, run_config, message):
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr-home")}
    done = subprocess.run([str(BIN / "fl-sim"), "flwr-run", "--app", str(ROOT), "--run-config", run_config],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("fl-sim: error: ") and message in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "flwr-home").exists()  # nothing of Flower's was started
