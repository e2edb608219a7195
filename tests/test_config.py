"""The run configuration: one schema, validated, with one-line errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from flwr.common.config import flatten_dict

from fl_sim.config import RunConfig, all_keys, describe, parse_assignment, read_toml
from fl_sim.errors import ConfigError
from fl_sim.protocol import train_config_from_record, train_config_record

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_run_config_lists_every_key_with_its_default():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert flatten_dict(pyproject["tool"]["flwr"]["app"]["config"]) == RunConfig().to_flat()


def test_flat_round_trip_and_overrides():
    config = RunConfig.from_flat({"train.lr": 0.05, "data.partitioner": "dirichlet", "num-server-rounds": 3})
    assert (config.train.lr, config.data.partitioner, config.num_server_rounds) == (0.05, "dirichlet", 3)
    assert RunConfig.from_flat(config.to_flat()) == config
    assert config.with_overrides({"seed": 7}).seed == 7
    assert list(RunConfig().to_flat()) == all_keys()


@pytest.mark.parametrize("value, expected", [
    ("0.05", 0.05), ("3", 3.0), (1, 1.0),
])
def test_numbers_from_strings_and_ints(value, expected):
    assert RunConfig.from_flat({"train.lr": value}).train.lr == expected


def test_a_lone_number_for_a_text_key_is_taken_as_text():
    """`--set faults.partitions=1` and `--run-config "output.run-id=42"` parse the value as a number."""
    config = RunConfig.from_flat({"faults.partitions": 1, "output.run-id": 42})
    assert (config.faults.partitions, config.output.run_id) == ("1", "42")


@pytest.mark.parametrize("flat, message", [
    ({"train.lrr": 0.1}, "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
    ({"bogus": 1}, "unknown config key 'bogus'"),
    ({"train": 1}, "config key 'train' is a section"),
    ({"model.name.extra": 1}, "config key 'model.name.extra' is not a section"),
    ({"train.lr": 0}, "config key 'train.lr' must be > 0; got 0"),
    ({"train.lr": "fast"}, "config key 'train.lr' must be a number; got 'fast'"),
    ({"seed": 1.5}, "config key 'seed' must be an integer; got 1.5"),
    ({"seed": True}, "config key 'seed' must be an integer; got True"),
    ({"data.partitioner": "random"},
     "config key 'data.partitioner' must be one of iid, dirichlet, classes, shards; got 'random'"),
    ({"model.name": "vgg"}, "config key 'model.name' must be one of lenet, convnet, flower-cnn, femnist-cnn, "
     "mlp, resnet18"),
    ({"data.channels": 2}, "config key 'data.channels' must be one of 1, 3; got 2"),
    ({"data.dirichlet-alpha": 0.0}, "config key 'data.dirichlet-alpha' must be > 0"),
    ({"server.fraction-train": 1.5}, "config key 'server.fraction-train' must be <= 1"),
    ({"data.root": [3]}, "config key 'data.root' must be a string; got [3]"),
    ({"server.min-available-nodes": 5, "simulation.num-clients": 3},
     "'server.min-available-nodes' (5) exceeds 'simulation.num-clients' (3)"),
    ({"data.val-fraction": 0.0}, "set server.fraction-evaluate=0 or a val-fraction above 0"),
])
def test_bad_keys_and_values_name_the_key(flat, message):
    with pytest.raises(ConfigError) as raised:
        RunConfig.from_flat(flat)
    text = str(raised.value)
    assert message in text
    assert "\n" not in text


def test_unknown_key_lists_the_allowed_keys_of_its_section():
    with pytest.raises(ConfigError, match=r"allowed here: train\.batch-size, .*train\.weight-decay"):
        RunConfig.from_flat({"train.bogus": 1})


def test_parse_assignment_reads_toml_scalars():
    assert parse_assignment("train.lr=0.05") == ("train.lr", 0.05)
    assert parse_assignment("data.partitioner=dirichlet") == ("data.partitioner", "dirichlet")
    assert parse_assignment("data.root = '/tmp/x'") == ("data.root", "/tmp/x")
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_assignment("train.lr")


def test_read_toml_accepts_sections_and_dotted_keys(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('seed = 3\n[train]\nlr = 0.2\n[data]\npartitioner = "classes"\n')
    config = RunConfig.from_flat(read_toml(path))
    assert (config.seed, config.train.lr, config.data.partitioner) == (3, 0.2, "classes")
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("seed = = 3")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        read_toml(tmp_path / "bad.toml")


def test_train_settings_travel_to_clients_and_back():
    config = RunConfig.from_flat({"train.lr": 0.3, "train.local-steps": 5}).train
    record = {**train_config_record(config), "server-round": 4}
    assert train_config_from_record(record) == config


def test_describe_covers_every_key_with_help():
    rows = describe()
    assert [key for key, _, _ in rows] == all_keys()
    assert all(help_text for _, _, help_text in rows)
    assert dict((k, d) for k, d, _ in rows)["model.name"] == "mlp"


def test_the_configuration_reference_page_is_current_and_lists_every_key():
    from lab.cli import configuration_reference

    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert page == configuration_reference(), "regenerate it: fl-sim config --markdown > docs/configuration.md"
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [key for key, _, _ in describe()]


def test_fl_sim_config_prints_booleans_as_they_are_written(capsys):
    from lab import cli

    assert cli.main(["config"]) == 0
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert (lines["attack.blocking"], lines["defense.error-feedback"]) == ("false", "true")


def test_a_preset_starts_the_settings_and_flags_override_it():
    from lab.cli import build_parser, config_from_args

    args = build_parser().parse_args(["run", "--preset", "flower-template", "--clients", "4", "--set", "train.lr=0.05"])
    config = config_from_args(args)
    assert (config.model.name, config.train.momentum, config.train.batch_size, config.train.local_epochs) == \
        ("flower-cnn", 0.9, 32, 1)
    assert (config.simulation.num_clients, config.train.lr) == (4, 0.05)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--preset", "flower"])
