"""Malformed and poisoned updates are rejected before aggregation and before any attack."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord

from clients.client_app import create_client_app
from fl_sim.results import read_events

from local_grid import FIRST_NODE_ID, LocalGrid, run_locally
from spy import Spy


def _poison(kind: str):
    """Corrupt the reply of the first node, the way ``kind`` says."""
    def corrupt(state: dict) -> dict:
        name = "classifier.weight"
        if kind == "nan":
            state[name] = state[name].clone().fill_(float("nan"))
        elif kind == "inf":
            state[name] = state[name].clone().fill_(float("inf"))
        elif kind == "shape":
            state[name] = state[name][:, :-1].clone()
        elif kind == "dtype":
            state[name] = state[name].double()
        elif kind == "missing":
            del state[name]
        elif kind == "extra":
            state["backdoor.weight"] = torch.zeros(3)
        return state
    return corrupt


class TamperingGrid(LocalGrid):
    """Node 101's train replies are changed by ``tamper(content)`` on their way to the server."""

    def __init__(self, *args, tamper, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tamper = tamper

    def send_and_receive(self, messages, *, timeout=None):
        """Send as the grid does, then tamper with the replies."""
        replies = list(super().send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.metadata.src_node_id == FIRST_NODE_ID and "arrays" in reply.content.array_records:
                self.tamper(reply.content)
        return replies


def _corrupt_arrays(corrupt):
    def tamper(content):
        content["arrays"] = ArrayRecord(corrupt(content["arrays"].to_torch_state_dict()))
    return tamper


@pytest.mark.parametrize("kind, reason", [
    ("nan", "holds NaN or Inf"), ("inf", "holds NaN or Inf"), ("shape", "has shape"),
    ("dtype", "has dtype float64"), ("missing", "missing ['classifier.weight']"),
    ("extra", "unexpected ['backdoor.weight']"),
])
def test_bad_updates_are_rejected_and_logged(tiny_config, kind, reason):
    spy = Spy()
    grid = TamperingGrid(create_client_app(tiny_config), 3, tamper=_corrupt_arrays(_poison(kind)))
    run_dir = run_locally(tiny_config, spy, grid=grid)
    events = read_events(run_dir)
    rejected = [e for e in events if e["event"] == "update-rejected"]
    assert [(e["round"], e["partition_id"]) for e in rejected] == [(1, 0), (2, 0)]
    assert reason in rejected[0]["reason"]
    assert 0 not in [p for _, p in spy.seen] and len([p for _, p in spy.seen]) == 4  # no plugin (no attack) saw it
    model = torch.load(run_dir / "model.pt")
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())
    assert events[-1]["status"] == "completed"


def _set(record: str, key: str, value):
    """Write ``value`` under ``key`` in the reply's metrics or its client info record."""
    def tamper(content):
        records = content.metric_records if record == "metrics" else content.config_records
        records[record][key] = value
    return tamper


@pytest.mark.parametrize("corrupt, reason", [
    (_set("metrics", "num-examples", float("nan")), "metric 'num-examples' is nan, not a finite number"),
    (_set("metrics", "num-examples", -5), "metric 'num-examples' is -5, not a whole number >= 1"),
    (_set("metrics", "num-examples", 10**15), "more than the"),
    (_set("metrics", "local-steps", 1.5), "metric 'local-steps' is 1.5, not a whole number >= 0"),
    (_set("metrics", "backdoor", 1.0), "unexpected ['backdoor']"),
    (_set("client", "partition-id", "zero"), "partition id 'zero' is not a non-negative integer"),
    (_set("client", "partition-id", 0.5), "partition id 0.5 is not a non-negative integer"),
])
def test_a_reply_with_bad_metrics_or_client_info_is_rejected_and_the_round_goes_on(tiny_config, corrupt, reason):
    grid = TamperingGrid(create_client_app(tiny_config), 3, tamper=corrupt)
    events = read_events(run_locally(tiny_config, grid=grid))
    rejected = [e for e in events if e["event"] == "update-rejected"]
    assert [e["round"] for e in rejected] == [1, 2]
    assert reason in rejected[0]["reason"]
    assert events[-1]["status"] == "completed"
