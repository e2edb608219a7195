"""The audit added to a user's own Flower app: the example app in simulation and in a deployment.

Attacked and judged in simulation, without ground truth in a deployment; its imports; the client mod's rule.
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from clients.audit import in_simulation, lend_images_mod
from fl_sim import protocol
from fl_sim.results import read_events

from local_grid import LocalGrid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart-pytorch"
BIN = Path(sys.executable).parent
#: The project's packages: an example of a user's app may use the audit API of them, nothing else.
PROJECT = ("fl_sim", "clients", "strategies", "attacker", "lab")
AUDIT_API = {"lab.audit", "clients.audit"}


def test_the_example_app_imports_nothing_of_fl_sim_but_the_audit_api():
    imported = set()
    for path in EXAMPLE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert {name for name in imported if name.split(".")[0] in PROJECT} == AUDIT_API


def test_the_client_mod_lends_nothing_outside_the_simulation():
    assert not in_simulation()  # the tests' own process: no Ray actor
    loads = []
    app = ClientApp(mods=[lend_images_mod(lambda context: loads.append(context))])

    @app.train()
    def train(msg, context):
        return Message(RecordDict({"arrays": msg.content["arrays"], "metrics": MetricRecord({"num-examples": 4})}),
                       reply_to=msg)

    grid = LocalGrid(app, num_nodes=2)
    replies = list(grid.send_and_receive(FedAvg().configure_train(1, ArrayRecord({"w": torch.zeros(3)}),
                                                                  ConfigRecord(), grid)))
    infos = sorted((dict(reply.content.config_records[protocol.CLIENT_INFO]) for reply in replies),
                   key=lambda info: info[protocol.PARTITION_ID])
    assert infos == [{protocol.PARTITION_ID: 0}, {protocol.PARTITION_ID: 1}] and not loads  # no image loaded


def _events(audit_dir: Path) -> list[dict]:
    [run_dir] = [p for p in audit_dir.iterdir() if p.is_dir()]
    return read_events(run_dir)


def test_the_example_app_under_flwr_run_has_every_update_attacked_and_judged(tmp_path):
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr-home"), "FLWR_DISABLE_UPDATE_CHECK": "1",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    superlink_was_up = _port_open(9093)
    try:
        done = subprocess.run([str(BIN / "flwr"), "run", str(EXAMPLE), "--stream", "--run-config",
                               f"num-server-rounds=1 audit-dir='{tmp_path / 'audit'}'",
                               "--federation-config", "num-supernodes=2"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    finally:
        if not superlink_was_up:
            subprocess.run(["pkill", "-f", f"flower-superlink.*{tmp_path}"], check=False)
    events = _events(tmp_path / "audit")
    attacks = [e for e in events if e["event"] == "attack"]
    assert sorted(e["partition_id"] for e in attacks) == [0, 1], (done.stdout + done.stderr)[-3000:]
    assert all(e["verdict"] in ("leaked", "not leaked") and "isolation" in e["applied"] for e in attacks)
    assert all(e["held"] > 700 for e in attacks)  # each client's whole training split, lent to the judge
    assert any(e["verdict"] == "leaked" for e in attacks)
    assert (next((tmp_path / "audit").iterdir()) / "attacks.csv").is_file()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
