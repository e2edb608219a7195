"""Bad input anywhere a user types: one line naming the problem and the fix, exit code 2, nothing written.

Each row goes through ``fl-sim run`` (in-process, as the console script calls it) from a
directory that already holds a finished results directory, which must come out untouched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from lab import cli

EXISTING = "out/finished"

#: (what the user wrote: config-file text or None, command-line arguments), expected message part
BAD_INPUTS = [
    # config files
    (("[train]\nlrr = 0.1\n", []), "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
    (("[train]\nlr = 'fast'\n", []), "config key 'train.lr' must be a number; got 'fast'"),
    (("[data]\npartitioner = 'random'\n", []), "config key 'data.partitioner' must be one of iid, dirichlet"),
    (("[train\nlr = 0.1\n", []), "is not valid TOML"),
    (("data = 3\n", []), "config key 'data' is a section"),
    (("[attack]\nenabled = 'maybe'\n", []), "config key 'attack.enabled' must be true or false; got 'maybe'"),
    (("[train]\nlr = nan\n", []), "config key 'train.lr' must be a finite number; got nan"),
    # numbers that are not numbers, seeds out of range
    ((None, ["--set", "server.fraction-train=nan"]), "config key 'server.fraction-train' must be a finite number"),
    ((None, ["--set", "data.val-fraction=nan"]), "config key 'data.val-fraction' must be a finite number"),
    ((None, ["--set", "train.lr=nan"]), "config key 'train.lr' must be a finite number; got nan"),
    ((None, ["--set", "server.round-timeout=nan"]), "config key 'server.round-timeout' must be a finite number"),
    ((None, ["--set", "attack.success-ssim=nan"]), "config key 'attack.success-ssim' must be a finite number"),
    ((None, ["--set", "simulation.client-cpus=inf"]), "config key 'simulation.client-cpus' must be a finite number"),
    ((None, ["--set", "defense.noise-std=-inf"]), "config key 'defense.noise-std' must be a finite number"),
    ((None, ["--seed", "-1"]), "config key 'seed' must be >= 0; got -1"),
    ((None, ["--seed", "99999999999999999999"]), "config key 'seed' must be <= 4294967295"),
    # resources no node has (the check starts this process's private Ray)
    ((None, ["--set", f"simulation.client-cpus={os.cpu_count() + 1}"]),
     f"config key 'simulation.client-cpus' is {os.cpu_count() + 1} but this machine has"),
    # run ids that would leave output.dir or name no folder
    ((None, ["--run-id", "../escaped"]), "config key 'output.run-id' must be one folder name"),
    ((None, ["--run-id", "/abs/path"]), "(contains a path separator); got '/abs/path'"),
    ((None, ["--run-id", ".."]), "config key 'output.run-id' must be one folder name"),
    ((None, ["--run-id", "  "]), "(starts or ends with a blank); got '  '"),
    ((None, ["--run-id", "a\nb"]), "(contains a control character); got 'a\\nb'"),
    ((None, ["--set", "=1"]), "override '=1' must look like key=value"),
    # an output.dir that cannot hold results
    ((None, ["--out", "a-file"]), "a-file' is a file; set it to a directory"),
    ((None, ["--out", "a-file/runs"]), "a-file' is a file; set it to a directory"),
    # a model that is neither the zoo's nor an importable builder of the user's
    ((None, ["--set", "model.name=mlp2"]),
     "config key 'model.name' must be one of lenet, convnet, flower-cnn, femnist-cnn, mlp, resnet18"),
    ((None, ["--set", "model.name=no_such_package.models:build"]),
     "config key 'model.name' (no_such_package.models:build) cannot be imported: ModuleNotFoundError"),
    # impossible combinations
    ((None, ["--clients", "2000"]), "2000 clients need at least 4000 training samples"),
    ((None, ["--set", "data.partitioner=dirichlet", "--set", "data.dirichlet-alpha=0"]),
     "config key 'data.dirichlet-alpha' must be > 0; got 0"),
    ((None, ["--set", "data.dirichlet-alpha=-1"]), "config key 'data.dirichlet-alpha' must be > 0; got -1"),
    ((None, ["--set", "defense.dgp-top-ratio=1.5"]), "config key 'defense.dgp-top-ratio' must be <= 1; got 1.5"),
    ((None, ["--set", "defense.dgp-bottom-ratio=-0.1"]), "config key 'defense.dgp-bottom-ratio' must be >= 0"),
    ((None, ["--set", "defense.name=dgp", "--set", "defense.dgp-top-ratio=0.5", "--set",
             "defense.dgp-bottom-ratio=0.6"]), "'defense.dgp-top-ratio' + 'defense.dgp-bottom-ratio' (0.5 + 0.6)"),
    ((None, ["--clients", "3", "--set", "server.min-available-nodes=5"]),
     "'server.min-available-nodes' (5) exceeds 'simulation.num-clients' (3)"),
    ((None, ["--clients", "3", "--set", "faults.partitions=5"]), "names partition 5 but there are only 3 clients"),
    pytest.param((None, ["--set", "attack.enabled=true", "--set", "attack.device=cuda"]),
                 "config key 'attack.device' is cuda but no CUDA GPU is visible",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    # command-line flags
    ((None, ["--clients", "x"]), "argument --clients: invalid int value: 'x'"),
    ((None, ["--rounds", "0"]), "config key 'num-server-rounds' must be >= 1; got 0"),
    ((None, ["--model", "vgg"]), "config key 'model.name' must be one of lenet, convnet, flower-cnn, femnist-cnn, "
     "mlp, resnet18"),
    ((None, ["--set", "train.lr"]), "override 'train.lr' must look like key=value"),
    ((None, ["--config", "missing.toml"]), "config file 'missing.toml' does not exist"),
    ((None, ["--run-id", "finished"]), "finished' already exists and is not empty; choose another output.run-id"),
    ((None, ["--resume", "nowhere"]), "'nowhere' is not a results directory"),
    # data roots
    ((None, ["--dataset", "cifar10", "--data-root", "nowhere"]), "cifar10 not found under 'nowhere'"),
    ((None, ["--dataset", "mnist", "--data-root", "junk"]), "mnist under 'junk' is incomplete or corrupted"),
    ((None, ["--dataset", "imagefolder", "--data-root", "empty"]), "'empty' is not an image folder"),
    ((None, ["--dataset", "imagefolder", "--data-root", "nowhere"]), "image folder 'nowhere' does not exist"),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A directory with a finished run's results, a junk MNIST root and an empty image folder."""
    finished = tmp_path / EXISTING
    (finished / "reconstructions").mkdir(parents=True)
    (finished / "config.json").write_text('{"seed": 0}\n')
    (finished / "events.jsonl").write_text('{"event": "run-end", "status": "completed"}\n')
    (finished / "reconstructions" / "round-1.png").write_bytes(b"\x89PNG")
    raw = tmp_path / "junk" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a directory\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("given, message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, capsys, given, message):
    config_text, args = given
    if config_text is not None:
        (workdir / "bad.toml").write_text(config_text)
        args = ["--config", "bad.toml", *args]
    before = _snapshot(workdir)
    with pytest.raises(SystemExit) as exited:  # argparse exits itself; our errors return 2
        raise SystemExit(cli.main(["run", "--out", "out", *args]))
    stderr = capsys.readouterr().err
    assert exited.value.code == 2
    assert message in stderr, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert _snapshot(workdir) == before
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["finished"]
