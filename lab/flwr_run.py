"""``fl-sim flwr-run``: Flower's ``flwr run`` with this project's checks before and its verdict after.

Plain ``flwr run .`` submits the run first and validates nothing of ours: a bad value ends
in a traceback streamed from the ServerApp, an unknown key in Flower's ``[code: 15]`` that
names no key, and ``flwr run`` exits 0 either way, without saying where the results went.
This wrapper checks the run config with :class:`RunConfig` (one line, exit 2), pins the
results directory to an absolute path, runs ``flwr run --stream``, and then reads that
directory: exit 0 with its path if the run completed, 1 with one line if not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import click
import psutil
from flwr.cli.constant import LOCAL_SUPERLINK_HTTP_API_PORT
from flwr.common.config import parse_config_args

from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError
from fl_sim.results import read_summary, resolve_run_dir, run_directory

#: Where Flower's managed local SuperLink listens (``flwr run`` probes it there before starting one).
LOCAL_SUPERLINK = ("127.0.0.1", int(LOCAL_SUPERLINK_HTTP_API_PORT))

#: One ``key=value`` pair as Flower's ``parse_config_args`` finds them; text outside them it ignores.
_PAIR = re.compile(r"(\S+?)=(\'[^\']*\'|\"[^\"]*\"|\S+)")

#: Set when the managed local SuperLink starts: the app then runs in this environment instead of a
#: fresh one that ``uv`` fills from PyPI (a CUDA build of torch, gigabytes) under ``$FLWR_HOME/runtime-envs``.
NO_RUNTIME_INSTALL = "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"


def checked_run_config(run_config: str) -> tuple[RunConfig, str]:
    """Validate a ``--run-config`` string as Flower parses it; return the config and the string to submit.

    The string submitted adds an absolute ``output.dir`` and a fixed ``output.run-id``, so that
    the results land where the user is, not in the working directory of Flower's runtime.
    """
    stray = "" if run_config.strip().endswith(".toml") else _PAIR.sub("", run_config).strip()
    if stray:
        raise ConfigError(f"--run-config: {stray!r} is not a key=value pair (Flower would ignore it); "
                          f"write e.g. --run-config \"train.lr=0.05 attack.enabled=true\"")
    try:
        overrides = parse_config_args([run_config]) if run_config.strip() else {}
    except (ValueError, OSError, click.ClickException) as err:
        message = err.message if isinstance(err, click.ClickException) else str(err)
        raise ConfigError(f"--run-config {run_config!r} cannot be read: {message}") from err
    config = resolve_run_dir(RunConfig.from_flat(overrides))
    pinned = {**overrides, "output.dir": config.output.dir, "output.run-id": config.output.run_id}
    return config, " ".join(f"{key}={json.dumps(value)}" for key, value in pinned.items())  # JSON scalars are TOML


def flwr_run(app_dir: Path, run_config: str, flwr_args: list[str]) -> tuple[int, str]:
    """Run the app with ``flwr run --stream``; return the exit code and the line that says how it ended."""
    config, submitted = checked_run_config(run_config)
    flwr = shutil.which("flwr", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if flwr is None:
        raise ConfigError("the `flwr` command is not installed here; run `make setup` (or pip install -e .)")
    run_dir = run_directory(config)
    superlink_was_up = _listening(*LOCAL_SUPERLINK)
    env = {**os.environ, NO_RUNTIME_INSTALL: os.environ.get(NO_RUNTIME_INSTALL, "1")}
    try:
        subprocess.run([flwr, "run", str(app_dir), *flwr_args, "--stream", "--run-config", submitted],
                       env=env, check=False)
    finally:
        stopped = "" if superlink_was_up else _stop_local_superlink()
    return _verdict(run_dir, stopped)


def _verdict(run_dir: Path, stopped: str) -> tuple[int, str]:
    """Exit code and last line for a ``flwr run`` that should have written ``run_dir``."""
    summary = read_summary(run_dir)
    if summary.get("status") == "completed":
        return 0, f"results: {run_dir}{stopped}"
    if not summary:
        return 1, (f"fl-sim: error: the run wrote no summary to {run_dir}; the lines above are Flower's account "
                   f"of why{stopped}")
    return 1, (f"fl-sim: error: the run ended {summary.get('status')} after round {summary.get('last_completed_round')}"
               f"{': ' + summary['error'] if summary.get('error') else ''}; see {run_dir / 'events.jsonl'}{stopped}")


def _stop_local_superlink() -> str:
    """Stop the managed local SuperLink that ``flwr run`` started for this command (none ran before)."""
    try:
        listeners = [conn.pid for conn in psutil.net_connections(kind="tcp")
                     if conn.status == psutil.CONN_LISTEN and tuple(conn.laddr) == LOCAL_SUPERLINK and conn.pid]
        for pid in listeners:
            process = psutil.Process(pid)
            process.terminate()
            process.wait(timeout=30)
    except (psutil.Error, OSError):
        return ""
    return " (the local SuperLink that flwr started for this run was stopped)" if listeners else ""


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0
