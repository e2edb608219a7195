"""Results where people look: the tidy attack table (CSV, Parquet) and the TensorBoard sink, read back."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fl_sim.reporting.tidy import COLUMNS, attack_rows, write_attack_table
from fl_sim.results import read_events, read_metrics

from local_grid import run_locally


@pytest.fixture(scope="module")
def attacked_run(tmp_path_factory):
    """A tiny two-round run, every update attacked, with the TensorBoard sink on."""
    from fl_sim.config import RunConfig

    from conftest import TINY

    out = tmp_path_factory.mktemp("results")
    config = RunConfig.from_flat({**TINY, "output.dir": str(out), "model.width": 64, "attack.enabled": True,
                                  "attack.blocking": True, "output.tensorboard": True,
                                  "defense.per-client": "topk:2"})
    return run_locally(config)


def test_the_attack_table_has_a_row_per_client_round_and_attack(attacked_run):
    attacks = [e for e in read_events(attacked_run) if e["event"] == "attack"]
    with open(attacked_run / "attacks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS
    # auto: each attack stage that ran, each that never started (the budget was spent first), each that did not apply
    unstarted = {(e["round"], e["partition_id"]): [s for run in e["runs"] for s in run["unstarted"]] for e in attacks}
    expected = sum(len(e["portfolio"]) + len(unstarted[e["round"], e["partition_id"]]) + len(e["not_applied"])
                   for e in attacks)
    assert len(rows) == expected == len(attack_rows(read_events(attacked_run)))
    for event in attacks:  # each attack that ran on the update, and each that did not apply, with its reason
        mine = [r for r in rows if (int(r["round"]), int(r["partition_id"])) == (event["round"], event["partition_id"])]
        ran = [r for r in mine if r["applied"] == "True"]
        assert [r["attack"] for r in ran] == [entry["attack"] for entry in event["portfolio"]] + \
            unstarted[event["round"], event["partition_id"]]
        assert all(r["complete"] == "False" and r["iterations"] == "0" for r in ran[len(event["portfolio"]):])
        assert {r["attack"].split()[0] for r in ran} <= set(event["applied"])
        assert {r["attack"]: r["why_not"] for r in mine if r["applied"] == "False"} == event["not_applied"]
        assert {r["verdict"] for r in mine} == {event["verdict"]} and {r["defense"] for r in mine} == {event["defense"]}
    table = pq.read_table(attacked_run / "attacks.parquet").to_pylist()
    assert [(r["round"], r["partition_id"], r["attack"], r["applied"]) for r in table] == \
        [(int(r["round"]), int(r["partition_id"]), r["attack"], r["applied"] == "True") for r in rows]
    assert all(isinstance(r["best_ssim"], float) for r in table if r["applied"] and r["images_leaked"] is not None)


def test_a_no_attack_applies_update_has_only_its_reasons_in_the_table(tmp_path):
    event = {"event": "attack", "round": 3, "partition_id": 1, "node_id": 2**64 - 5, "defense": "none", "held": 4,
             "verdict": "no attack applies", "portfolio": None, "applied": [],
             "not_applied": {"isolation": "local adam rescales every entry", "ig": "no published attack"}}
    rows = attack_rows([event])
    assert [(r["attack"], r["applied"], r["why_not"]) for r in rows] == [
        ("isolation", False, "local adam rescales every entry"), ("ig", False, "no published attack")]
    (tmp_path / "events.jsonl").write_text(json.dumps(event) + "\n")  # Flower's node ids are unsigned 64-bit
    write_attack_table(tmp_path)
    assert pq.read_table(tmp_path / "attacks.parquet").to_pylist()[0]["node_id"] == 2**64 - 5


def test_tensorboard_holds_the_rounds_scalars_and_each_rounds_reconstructions(attacked_run):
    log = EventAccumulator(str(attacked_run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    log.Reload()
    accuracy = {s.step: s.value for s in log.Scalars("accuracy/test")}
    assert accuracy == pytest.approx({int(r["round"]): r["test_accuracy"] for r in read_metrics(attacked_run)})
    rounds = [e for e in read_events(attacked_run) if e["event"] == "attack-round"]
    leak_rate = {s.step: s.value for s in log.Scalars("attack/client_leak_rate")}
    assert leak_rate == pytest.approx({e["round"]: e["client_success_rate"] for e in rounds})
    for partition in range(3):
        images = log.Images(f"reconstructions/client-{partition}")
        assert [image.step for image in images] == [1, 2] and all(image.width > 0 for image in images)
