"""Every line a run writes is an event declared in fl_sim.events, with exactly its declared fields."""

from __future__ import annotations

import dataclasses

import pytest

from fl_sim import events
from fl_sim.config import RunConfig
from fl_sim.results import ResultsWriter, load_events, read_events
from strategies.run_recorder import RunRecorder

from local_grid import run_locally


def test_kinds_are_unique_and_every_class_is_registered():
    classes = [cls for cls in vars(events).values()
               if isinstance(cls, type) and issubclass(cls, events.Event) and cls is not events.Event]
    assert sorted(events.KINDS) == sorted(cls.KIND for cls in classes)
    assert len(set(events.KINDS)) == len(classes)


def test_every_line_of_a_run_parses_into_its_declared_event(tiny_config):
    config = tiny_config.with_overrides({"attack.enabled": True, "attack.method": "ig", "attack.iterations": 3,
                                         "faults.partitions": "1", "faults.rounds": "2"})
    run_dir = run_locally(config)
    lines, parsed = read_events(run_dir), load_events(run_dir)
    assert {event.KIND for event in parsed} >= {"run-start", "round", "client-train", "client-evaluate",
                                                 "client-failure", "attack", "attack-round", "run-end"}
    for line, event in zip(lines, parsed):  # nothing written that the declaration does not name
        assert set(line) - {"event"} == {field.name for field in dataclasses.fields(event)}
        assert event.time == line["time"]
    attacks = [event for event in parsed if isinstance(event, events.Attack)]
    image_fields = {field.name for field in dataclasses.fields(events.ImageScore)}
    assert all(isinstance(image, events.ImageScore) for event in attacks for image in event.per_image)
    assert all(set(image) == image_fields for line in lines if line["event"] == "attack" for image in line["per_image"])
    assert all(isinstance(event.chance, events.ChanceLevel) for event in attacks)
    assert [event.fields() for event in parsed] == [{k: v for k, v in line.items() if k not in ("event", "time")}
                                                    for line in lines]  # written back, the same lines


def test_an_undeclared_kind_or_field_does_not_parse():
    with pytest.raises(ValueError, match="unknown event kind 'attack-done'"):
        events.parse({"event": "attack-done", "time": 1.0})
    with pytest.raises(TypeError, match="unexpected keyword argument 'ssim'"):
        events.parse({"event": "attack-cut", "time": 1.0, "round": 1, "clients": 2, "reason": "x", "ssim": 0.5})


def test_an_evaluation_reply_off_the_protocol_is_still_logged(tmp_path):
    """Evaluation replies are not validated: a missing metric is null, an extra one is not an error."""
    writer = ResultsWriter.create(RunConfig.from_flat({"output.dir": str(tmp_path), "output.run-id": "r"}))
    recorder = RunRecorder(writer, model=None, test_data=None)
    recorder.on_evaluate_reply(1, node_id=7, partition_id=0, metrics={"eval-loss": 0.5, "extra": 1.0})
    writer.close()
    [line] = [e for e in read_events(writer.directory) if e["event"] == "client-evaluate"]
    assert (line["eval_loss"], line["eval_accuracy"], line["num_examples"]) == (0.5, None, None)
    assert "extra" not in line
