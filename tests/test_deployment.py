"""Deployment: the compose file, the same topology as local processes (insecure and TLS), a Ray cluster."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fl_sim.results import read_events

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "FLWR_DISABLE_UPDATE_CHECK": "1"}
pytestmark = pytest.mark.e2e
#: A tiny job: 3 SuperNodes x 2 rounds of 2 local steps on 16x16 digits.
TINY_RUN_CONFIG = "num-server-rounds=2 data.image-size=16 train.local-steps=2 train.batch-size=8"


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 check=False).returncode == 0:
        return ["docker", "compose"]
    return [shutil.which("docker-compose")] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose_command() is None, reason="neither `docker compose` nor docker-compose is installed")
@pytest.mark.parametrize("overrides", [[], ["docker-compose.tls.yml"], ["docker-compose.gpu.yml"]])
def test_compose_files_validate(overrides):
    files = [arg for name in ["docker-compose.yml", *overrides] for arg in ("-f", name)]
    done = subprocess.run([*_compose_command(), *files, "config"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    config = done.stdout
    assert all(f"partition-id={i} num-partitions=3" in config for i in range(3))
    assert "superlink:9093" in config and "/app/results" in config and "/app/data" in config
    if "docker-compose.tls.yml" in overrides:
        assert "--ssl-certfile" in config and "--insecure" not in config
    if "docker-compose.gpu.yml" in overrides:
        assert "driver: nvidia" in config and "cu128" in config


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _deploy(tmp_path: Path, *options: str, port: int) -> tuple[subprocess.CompletedProcess, Path, float]:
    if any(_port_open(p) for p in range(port, port + 4)):
        pytest.skip(f"ports {port}-{port + 3} are in use")
    start = time.perf_counter()
    done = subprocess.run([str(ROOT / "scripts" / "local_deployment.sh"), "--port", str(port), "--workdir",
                           str(tmp_path / "work"), "--results", str(tmp_path / "results"), *options],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert not any(_port_open(p) for p in range(port, port + 4)), "the script left a Flower process running"
    return done, tmp_path / "results" / "deployed", seconds


def test_local_deployment_trains_and_attacks_every_client_of_every_round(tmp_path):
    done, run_dir, seconds = _deploy(tmp_path, "--run-config", f"{TINY_RUN_CONFIG} output.run-id='deployed' "
                                     "attack.enabled=true attack.iterations=30", port=19093)
    print(f"local deployment, 3 SuperNodes x 2 rounds with the attack on: {seconds:.1f} s")
    assert "WARNING: insecure mode" in done.stderr
    events = read_events(run_dir)
    every = [(r, p) for r in (1, 2) for p in range(3)]
    assert sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "client-train") == every
    assert sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "attack") == every
    assert [e["round"] for e in events if e["event"] == "round"] == [0, 1, 2]
    assert events[-1]["event"] == "run-end" and events[-1]["status"] == "completed"
    assert "attack round 2:" in done.stdout  # the ServerApp's lines reach `flwr run --stream`
    assert (run_dir / "report.html").is_file()


def test_local_deployment_over_tls_records_a_client_that_drops_out(tmp_path):
    done, run_dir, seconds = _deploy(
        tmp_path, "--tls", "--run-config", f"{TINY_RUN_CONFIG} output.run-id='deployed' faults.partitions='1' "
        "faults.rounds='1' faults.mode='drop' server.round-timeout=30", port=19193)
    print(f"local deployment over TLS with a drop-out: {seconds:.1f} s")
    assert "WARNING: insecure mode" not in done.stderr
    assert (tmp_path / "work" / "certs" / "ca.crt").is_file()
    events = read_events(run_dir)
    failures = [e for e in events if e["event"] == "client-failure"]
    assert [e["round"] for e in failures] == [1] and "no reply before the round's timeout" in failures[0]["reason"]
    assert [e["clients"] for e in events if e["event"] == "round"] == [0, 2, 3]  # the node is back in round 2
    assert events[-1]["status"] == "completed"


def test_simulation_on_an_existing_ray_cluster(tmp_path):
    port = 6391  # outside Ray's default worker port range (10002-19999)
    if _port_open(port):
        pytest.skip(f"port {port} is in use")
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--disable-usage-stats",
                             "--include-dashboard=false", "--temp-dir", ray_dir],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not _port_open(port) and time.monotonic() < deadline and head.poll() is None:
            time.sleep(0.5)
        assert _port_open(port), f"the Ray head did not start: {head.poll()}"
        done = subprocess.run([str(BIN / "fl-sim"), "run", "--clients", "4", "--rounds", "2", "--out",
                               str(tmp_path / "out"), "--run-id", "cluster", "--set", "data.image-size=16",
                               "--set", "train.local-steps=2", "--set", f"simulation.ray-address=127.0.0.1:{port}",
                               "--set", "simulation.client-cpus=0.5"],
                              env=ENV, capture_output=True, text=True, timeout=300, check=False)
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the cluster it started
        head.communicate(timeout=60)
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f":{port} (2 CPUs)" in done.stderr
    events = read_events(tmp_path / "out" / "cluster")
    assert sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "client-train") == [
        (r, p) for r in (1, 2) for p in range(4)]
    assert events[-1]["status"] == "completed"
