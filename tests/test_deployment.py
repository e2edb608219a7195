"""Deployment.

The compose federation in real containers (over TLS; with SuperNode authentication), the same topology as local
processes (insecure and TLS), a Ray cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from images import BIN, ENV, ROOT, compose_command, docker_answers, remove_built_images, wait_for_build

from fl_sim.results import read_events

pytestmark = pytest.mark.e2e
#: A tiny job: 3 SuperNodes x 2 rounds of 2 local steps on 16x16 digits.
TINY_RUN_CONFIG = ("num-server-rounds=2 data.image-size=16 train.local-steps=2 train.batch-size=8 "
                   "attack.deep-budget-seconds=0")  # undecided updates kept, not attacked on (tested apart)


@pytest.mark.skipif(compose_command() is None, reason="neither `docker compose` nor docker-compose is installed")
@pytest.mark.parametrize("overrides", [[], ["docker-compose.tls.yml"], ["docker-compose.gpu.yml"],
                                       ["docker-compose.auth.yml"],
                                       ["docker-compose.tls.yml", "docker-compose.auth.yml"]])
def test_compose_files_validate(overrides):
    files = [arg for name in ["docker-compose.yml", *overrides] for arg in ("-f", name)]
    done = subprocess.run([*compose_command(), *files, "config"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    config = done.stdout
    assert all(f"partition-id={i} num-partitions=3" in config for i in range(3))
    assert "superlink:9093" in config and "/app/results" in config and "/app/data" in config
    if "docker-compose.tls.yml" in overrides:
        assert "--ssl-certfile" in config and "--insecure" not in config
    if "docker-compose.gpu.yml" in overrides:
        assert "driver: nvidia" in config
    if "docker-compose.auth.yml" in overrides:  # TLS (which authentication needs), a private key per SuperNode
        services = yaml.safe_load(config)["services"]
        assert "--enable-supernode-auth" in services["superlink"]["command"]
        assert "--ssl-keyfile" in services["superlink"]["command"] and "--insecure" not in config
        for i in range(3):
            command = services[f"supernode-{i}"]["command"]
            assert command[command.index("--auth-supernode-private-key") + 1] == "/app/keys/supernode.key"
            assert command[command.index("--root-certificates") + 1] == "/app/certs/ca.crt"
            mounts = _mounts(services[f"supernode-{i}"])
            assert mounts["/app/keys/supernode.key"] == (str(ROOT / "deploy" / "supernode-keys" / f"supernode-{i}"),
                                                         True)  # its own key alone, read-only
            assert mounts["/app/certs/ca.crt"][1] and not any("/app/certs/server" in m for m in mounts)


def _mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """A compose service's volumes as ``{target: (source, read_only)}``, from short or long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts[target] = (source, mode == ["ro"])
        else:
            mounts[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return mounts


needs_docker = pytest.mark.skipif(compose_command() is None or not docker_answers(),
                                  reason="no Docker daemon answers (.ci/run starts one where it can), or no compose")


@pytest.fixture(scope="module")
def container_images() -> Iterator[None]:
    """fl-sim's SuperLink and SuperNode images (built in the background since collection); removed afterwards."""
    wait_for_build()
    try:
        yield
    finally:
        remove_built_images()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComposeFederation:
    """A SuperLink and three SuperNodes of docker-compose.yml (plus overrides), up in their own project."""

    def __init__(self, tmp_path: Path, *overrides: str, certs: Path | None = None, keys: Path | None = None):
        self.port = _free_port()
        self.results = tmp_path / "results"
        data = tmp_path / "data"
        for folder, mode in ((self.results, 0o777), (data, 0o755)):  # the containers run as uid 49999
            folder.mkdir()
            folder.chmod(mode)
        self.env = {**ENV, "FL_SIM_PORT": str(self.port), "FL_SIM_RESULTS": str(self.results),
                    "FL_SIM_DATA": str(data), "FLWR_HOME": str(tmp_path / "flwr-home")}
        connection = "insecure = true"
        if certs is not None:
            self.env["FL_SIM_CERTS"] = str(certs)
            connection = f'root-certificates = "{certs / "ca.crt"}"'
        if keys is not None:  # docker-compose.auth.yml: the SuperNodes' private keys
            self.env["FL_SIM_SUPERNODE_KEYS"] = str(keys)
        (tmp_path / "flwr-home").mkdir()
        (tmp_path / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "compose"\n\n[superlink.compose]\naddress = "127.0.0.1:{self.port}"\n'
            f"{connection}\n")
        self.compose = [*compose_command(), "--project-name", f"flsim{self.port}",
                        *(arg for name in ["docker-compose.yml", *overrides] for arg in ("-f", name))]

    def _compose(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([*self.compose, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
        return done.stdout

    @contextmanager
    def down_afterwards(self) -> Iterator[None]:
        """``down`` whatever was started in this project when the block ends."""
        try:
            yield
        finally:
            self._compose("down", "--volumes", "--remove-orphans")

    def start(self, *services: str) -> None:
        """``up --detach`` these services (every one when none is named)."""
        self._compose("up", "--detach", "--no-build", *services)

    def logs(self, service: str) -> str:
        """The service's log so far (every container start of it)."""
        return self._compose("logs", service)

    def wait_for_log(self, service: str, text: str, count: int = 1, timeout: float = 120) -> None:
        """Wait until the service's log holds ``text`` ``count`` times; fails with all logs' tails after ``timeout``."""
        start = time.perf_counter()
        while self.logs(service).count(text) < count:
            assert time.perf_counter() - start < timeout, self._compose("logs")[-4000:]
            time.sleep(0.5)

    @contextmanager
    def up(self) -> Iterator[float]:
        """Start the containers; yields the seconds until all three SuperNodes were registered."""
        start = time.perf_counter()
        try:
            self._compose("up", "--detach", "--no-build")
            while self._compose("logs", "superlink").count("Activated node_id") < 3:
                assert time.perf_counter() - start < 120, self._compose("logs")[-4000:]
                time.sleep(0.5)
            yield time.perf_counter() - start
        finally:
            self._compose("down", "--volumes", "--remove-orphans")

    def start_run(self, run_config: str, clients: int = 3) -> subprocess.Popen:
        """``flwr run`` this project on the federation; the ServerApp writes to results/compose/."""
        return subprocess.Popen([str(BIN / "flwr"), "run", str(ROOT), "compose", "--stream", "--run-config",
                                 f"{run_config} simulation.num-clients={clients} output.dir='/app/results' "
                                 "output.run-id='compose'"],
                                cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A host command (Flower's CLI, a script) with this federation's environment: its ``FLWR_HOME``."""
        return subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def container_state(self, service: str) -> tuple[str, int, int]:
        """The service's container: its status (running, restarting, exited), last exit code and restart count."""
        container = self._compose("ps", "--quiet", service).strip()
        inspected = subprocess.run(["docker", "inspect", "--format",
                                    "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}", container],
                                   capture_output=True, text=True, check=True)
        status, exit_code, restarts = inspected.stdout.split()
        return status, int(exit_code), int(restarts)

    def kill(self, service: str) -> None:
        """``docker kill`` the container of one service, as a crash would end it."""
        container = self._compose("ps", "--quiet", service).strip()
        subprocess.run(["docker", "kill", container], capture_output=True, check=True)


@needs_docker
def test_compose_federation_over_tls_under_secagg_attacks_the_aggregate_and_sums_without_a_killed_supernode(
        container_images, tmp_path):
    """SecAgg+ in containers: the attack gets the round's aggregate; a SuperNode killed mid-round drops out of it."""
    certs = tmp_path / "certs"
    subprocess.run([str(ROOT / "scripts" / "generate_certs.sh"), str(certs)], capture_output=True, check=True)
    certs.chmod(0o755)
    federation = ComposeFederation(tmp_path, "docker-compose.tls.yml", certs=certs)
    run_dir = federation.results / "compose"
    with federation.up() as ready_seconds:
        # partition 2 stalls (before training), so its container is killed while it holds the round; one round: each
        # of SecAgg+'s four stages starts a ClientApp process on every node
        start = time.perf_counter()
        one_round = TINY_RUN_CONFIG.replace("num-server-rounds=2", "num-server-rounds=1")
        run = federation.start_run(f"{one_round} secagg.enabled=true attack.enabled=true attack.iterations=30 "
                                   "faults.partitions='2' faults.mode='timeout' faults.delay-seconds=600 "
                                   "server.round-timeout=300")
        # killed once it stalls in the collect stage, after it shared its keys: its mask must be undone
        federation.wait_for_log("supernode-2", "faults: partition 2 stalls", timeout=300)
        killed_at = time.time()
        federation.kill("supernode-2")
        output, _ = run.communicate(timeout=600)
        run_seconds = time.perf_counter() - start
    assert run.returncode == 0, output[-4000:]
    events = read_events(run_dir)
    failures = [e for e in events if e["event"] == "client-failure"]
    round_1 = next(e for e in events if e["event"] == "round" and e["round"] == 1)
    print(f"compose over TLS under SecAgg+: 3 SuperNodes registered {ready_seconds:.1f} s after `up`; `flwr run` of "
          f"1 round with the attack on: {run_seconds:.1f} s; supernode-2 killed in the round, which summed the "
          f"others {round_1['time'] - killed_at:.1f} s later ({failures[0]['reason'] if failures else 'no failure'})")
    assert [e["round"] for e in failures] == [1] and "Node Unavailable" in failures[0]["reason"]
    assert "collect_masked_vectors" in failures[0]["reason"]
    assert [e["clients"] for e in events if e["event"] == "round"] == [0, 2]
    trained = sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "client-train")
    assert trained == [(1, 0), (1, 1)]
    summed = [(e["round"], e["clients"], e["partition_ids"]) for e in events if e["event"] == "secure-aggregate"]
    assert [(r, n, sorted(p)) for r, n, p in summed] == [(1, 2, [0, 1])]
    attacks = [e for e in events if e["event"] == "attack"]
    assert [(e["round"], e["node_id"], e["clients"], e["held"]) for e in attacks] == [(1, 0, 2, 32)]
    assert (run_dir / "reconstructions" / "round-1" / "secure-aggregate.png").is_file()
    assert events[-1]["event"] == "run-end" and events[-1]["status"] == "completed"
    assert (run_dir / "report.html").is_file()
    assert "attack round 1:" in output and "results: /app/results/compose" in output


@needs_docker
def test_compose_federation_with_supernode_authentication_trains_a_registered_node_and_refuses_another(
        container_images, tmp_path):
    """docker-compose.auth.yml: supernode-0's public key registered with ``flwr supernode register``, supernode-1's not.

    The registered node trains a 1-node job of one round; the other never gets a node id: the SuperLink refuses to
    activate it, it exits, and after its restarts it stays down.
    """
    certs, keys = tmp_path / "certs", tmp_path / "keys"
    subprocess.run([str(ROOT / "scripts" / "generate_certs.sh"), str(certs)], capture_output=True, check=True)
    certs.chmod(0o755)
    script = str(ROOT / "scripts" / "register_supernodes.sh")
    subprocess.run([script, "generate", str(keys), "2"], capture_output=True, check=True)
    assert sorted(p.name for p in keys.iterdir()) == ["supernode-0", "supernode-0.pub", "supernode-1",
                                                      "supernode-1.pub"]
    federation = ComposeFederation(tmp_path, "docker-compose.auth.yml", certs=certs, keys=keys)
    run_dir = federation.results / "compose"
    start = time.perf_counter()
    with federation.down_afterwards():
        federation.start("superlink")
        federation.wait_for_log("superlink", "Uvicorn running on https://")
        registered = federation.run(script, "register", "compose", str(keys), "0")
        assert registered.returncode == 0, (registered.stdout + registered.stderr)[-3000:]
        [node_id] = re.findall(r"SuperNode (\d+) registered successfully", registered.stdout)
        federation.start("supernode-0", "supernode-1")
        federation.wait_for_log("superlink", f"Activated node_id={node_id}")
        federation.wait_for_log("supernode-1", "Failed to activate SuperNode")
        ready_seconds = time.perf_counter() - start
        one_round = TINY_RUN_CONFIG.replace("num-server-rounds=2", "num-server-rounds=1")
        run = federation.start_run(f"{one_round} attack.enabled=false output.report=false server.min-available-nodes=1 "
                                   "server.min-train-nodes=1 server.min-evaluate-nodes=1", clients=1)
        output, _ = run.communicate(timeout=300)
        run_seconds = time.perf_counter() - start - ready_seconds
        listed = federation.run(str(BIN / "flwr"), "supernode", "list", "compose", "--format", "json")
        deadline = time.monotonic() + 60  # its 3 restarts (on-failure:3) take seconds
        while (state := federation.container_state("supernode-1"))[0] != "exited" and time.monotonic() < deadline:
            time.sleep(1)
        refused, superlink = federation.logs("supernode-1"), federation.logs("superlink")
    print(f"compose with SuperNode authentication: SuperLink up, supernode-0 registered and activated, supernode-1 "
          f"refused {ready_seconds:.1f} s after `up`; `flwr run` of a round on the registered node: "
          f"{run_seconds:.1f} s; supernode-1 {state[0]} (exit code {state[1]}) after {state[2]} restarts")
    assert run.returncode == 0, output[-4000:]
    events = read_events(run_dir)
    assert sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "client-train") == [(1, 0)]
    assert [e["clients"] for e in events if e["event"] == "round"] == [0, 1]
    assert events[-1]["event"] == "run-end" and events[-1]["status"] == "completed"
    assert "results: /app/results/compose" in output
    # only the registered node is known to the SuperLink, and online
    assert listed.returncode == 0, listed.stderr[-3000:]
    nodes = json.loads(listed.stdout[listed.stdout.index("{"):])["nodes"]
    assert [(n["node-id"], n["status"]) for n in nodes] == [(node_id, "online")]
    assert superlink.count("Activated node_id") == 1
    # the unregistered node was refused at each of its 4 starts and never got a node id
    assert state[0] == "exited" and state[1] != 0 and state[2] == 3, state
    assert refused.count("[code: 2004] Failed to activate SuperNode") == 4 and "SuperNode ID:" not in refused
    assert superlink.count("exception: No SuperNode found with the given public key") == 4


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


def test_local_deployment_over_tls_attacks_every_update_and_records_a_client_that_drops_out(tmp_path):
    # 60 s: the image build and other tests share the 2 cores, and a round-2 reply once took over 30 s
    done, run_dir, seconds = _deploy(
        tmp_path, "--tls", "--run-config", f"{TINY_RUN_CONFIG} output.run-id='deployed' attack.enabled=true "
        "attack.iterations=30 faults.partitions='1' faults.rounds='1' faults.mode='drop' server.round-timeout=60",
        port=19193)
    print(f"local deployment over TLS, 3 SuperNodes x 2 rounds with the attack on and a drop-out: {seconds:.1f} s")
    assert "WARNING: insecure mode" not in done.stderr
    assert (tmp_path / "work" / "certs" / "ca.crt").is_file()
    events = read_events(run_dir)
    failures = [e for e in events if e["event"] == "client-failure"]
    assert [e["round"] for e in failures] == [1], failures
    assert "no reply before the round's timeout" in failures[0]["reason"]
    assert [e["clients"] for e in events if e["event"] == "round"] == [0, 2, 3]  # the node is back in round 2
    trained = sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "client-train")
    assert trained == [(1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "attack") == trained
    assert events[-1]["event"] == "run-end" and events[-1]["status"] == "completed"
    assert "attack round 2:" in done.stdout  # the ServerApp's lines reach `flwr run --stream`
    assert (run_dir / "report.html").is_file()


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


def test_the_example_app_deployed_has_its_updates_attacked_without_ground_truth(tmp_path):
    """A user's own app (examples/quickstart-pytorch) with the audit, on SuperLink and SuperNodes as processes.

    Its ClientApps run in plain subprocesses, not in the Simulation Engine: they lend no images, and every
    verdict says so.
    """
    audit_dir = tmp_path / "audit"
    _deploy(tmp_path, "--app", str(ROOT / "examples" / "quickstart-pytorch"), "--nodes", "2", "--run-config",
            f"num-server-rounds=1 audit-dir='{audit_dir}'", port=19293)
    [run_dir] = [p for p in audit_dir.iterdir() if p.is_dir()]
    attacks = [e for e in read_events(run_dir) if e["event"] == "attack"]
    assert sorted(e["partition_id"] for e in attacks) == [0, 1]
    assert all(e["verdict"] == "no ground truth" and e["images"] > 0 for e in attacks)
