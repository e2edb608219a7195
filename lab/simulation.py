"""Run a federation on Flower's Simulation Engine (Ray backend) from a :class:`RunConfig`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import typing
from pathlib import Path
from typing import TextIO

import ray
import torch
from flwr.simulation import run_simulation

from attacker.pool import pool_resources
from clients.client_app import create_client_app
from fl_sim.config import RunConfig, SimulationConfig
from fl_sim.data import load_client_data, load_dataset
from fl_sim.devices import resolve_device
from fl_sim.errors import ConfigError, EngineStopped
from fl_sim.models import Architecture
from fl_sim.privacy import unsupported_layers
from fl_sim.reporting.console import follow
from fl_sim.reporting.tensorboard import check_available as check_tensorboard
from fl_sim.results import (
    CONFIG,
    check_output_dir,
    ensure_not_in_use,
    holds_results,
    mark_interrupted,
    resolve_run_dir,
    run_directory,
)
from lab.federation import PluginFactory
from lab.server_app import create_server_app
from strategies.watched_grid import EngineWatch


def preflight(config: RunConfig, resume: bool = False) -> RunConfig:
    """Check what a user can get wrong before any process starts; return the config with its run dir fixed.

    Loads the data set and the first client's partition (so a missing data root or an
    impossible split fails here, in one line), builds the model once (a user's ``package.module:builder``
    that cannot be imported, raises or does not fit the data fails here too), checks that an asked-for GPU
    is there, and refuses an existing results directory (unless the run is resumed).
    """
    config = resolve_run_dir(config)
    load_client_data(config.data, 0, config.simulation.num_clients, config.seed)
    dataset = load_dataset(config.data)
    model = Architecture.of(config, dataset.input_shape, dataset.num_classes).build()
    if config.defense.entry().in_local_training:
        check_private_model(config, model)
    if config.attack.enabled:
        resolve_device(config.attack.device)
    if config.output.tensorboard:
        check_tensorboard()
    _probe_ray_address(config.simulation.ray_address)
    run_dir = run_directory(config)
    check_output_dir(Path(config.output.dir))
    if resume:
        ensure_not_in_use(run_dir)
    elif holds_results(run_dir):
        raise ConfigError(f"results directory '{run_dir}' already exists and is not empty; "
                          f"choose another output.run-id or remove it")
    return config


def check_private_model(config: RunConfig, model: torch.nn.Module) -> None:
    """DP-SGD needs per-sample gradients: refuse, in one line, a ``model`` with a layer Opacus cannot handle."""
    problems = unsupported_layers(model)
    if problems:
        raise ConfigError(f"defense.name=dpsgd cannot train model.name={config.model.name} with "
                          f"model.norm={config.model.norm}: {'; '.join(problems)}; choose model.norm=group or "
                          f"another model")


def _probe_ray_address(address: str) -> None:
    """Fail in one line, at once, when nothing listens at a ``host:port`` Ray address.

    ``ray.init`` would retry for minutes.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not address or address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
    except OSError as err:
        raise ConfigError(f"config key 'simulation.ray-address' is {address!r} but nothing answers there "
                          f"({err}); start the cluster with `ray start --head`, or set it to '' for a private "
                          f"local Ray") from err


class _DropRunSimulationDeprecation(logging.Filter):
    """Hide Flower's notice that ``run_simulation`` is deprecated: it is the programmatic API we mean to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`run_simulation` function is deprecated" not in record.getMessage()


def simulate(config: RunConfig, plugins: PluginFactory | None = None, verbose: bool = False,
             resume: bool = False, stop_on_signal: bool = False, console: TextIO | None = None,
             live: bool = False) -> Path:
    """Run the configured federation in simulation (or, with ``resume``, the rest of it); return its directory.

    Progress goes to ``console``: the live display if ``live`` (a terminal), else one line per
    round and attack result. With ``stop_on_signal`` (the CLI's choice), SIGINT and SIGTERM
    mark the run ``interrupted`` and end the process, see :func:`signals_stop_run`.
    """
    config = preflight(config, resume)
    sim = config.simulation
    flwr_logger = logging.getLogger("flwr")
    # fl-sim reports what Flower would log (client failures, the engine's end) as events and one-line
    # messages; Flower's own log, tracebacks included, is for --verbose
    flwr_logger.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    flwr_logger.addFilter(_DropRunSimulationDeprecation())
    _start_ray(sim.ray_address, verbose, pool_resources(config.attack))
    _check_client_resources(sim)
    guard = signals_stop_run(run_directory(config)) if stop_on_signal else contextlib.nullcontext()
    display = _LiveDisplay(run_directory(config), console) if console and live else contextlib.nullcontext()
    watch = EngineWatch()
    with guard, display:
        try:
            # Flower 1.42 deprecates run_simulation for `flwr run` on a SuperLink, which runs apps loaded from
            # a FAB. The lab keeps it while Flower has no replacement that runs a ServerApp and ClientApp built
            # in this process: the plugins, the engine watch and the live display are Python objects handed
            # in here, not settings a FAB can carry (`fl-sim flwr-run` covers the `flwr run` path).
            run_simulation(
                server_app=create_server_app(config, plugins, resume, console=None if live else console, watch=watch),
                client_app=create_client_app(config),
                num_supernodes=sim.num_clients,
                backend_config={"client_resources": {"num_cpus": sim.client_cpus, "num_gpus": sim.client_gpus}},
                verbose_logging=verbose,
            )
        except Exception as err:
            if watch.server_finished.is_set():
                raise  # the ServerApp's own error, re-raised by Flower
            _end_after_engine_stopped(watch, run_directory(config), err)
    return run_directory(config)


#: How long the ServerApp may take to record the end of a run whose engine stopped (plugins close, report).
SERVER_WRAP_UP_SECONDS = 60


def _end_after_engine_stopped(watch: EngineWatch, run_dir: Path, err: Exception) -> typing.NoReturn:
    """The Simulation Engine crashed while the ServerApp waited for replies.

    Let the ServerApp record a ``failed`` end at once (not after ``server.round-timeout``), then raise
    :class:`EngineStopped`.
    """
    watch.engine_stopped.set()
    watch.server_finished.wait(SERVER_WRAP_UP_SECONDS)
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    cause = f"{type(root).__name__}: {str(root).splitlines()[0] if str(root) else 'no message'}"
    raise EngineStopped(f"Flower's Simulation Engine stopped ({cause}); the rounds completed are kept: "
                        f"fix the cause, then fl-sim run --resume {run_dir}") from err


class _LiveDisplay:
    """The live console display of a run, following its events from a thread while the run goes on."""

    def __init__(self, run_dir: Path, console: TextIO) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=follow, args=(run_dir, console, True, self._stop),
                                        name="fl-sim-live", daemon=True)

    def __enter__(self) -> _LiveDisplay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _start_ray(address: str, verbose: bool = False, resources: dict[str, float] | None = None) -> None:
    """Start Ray, or join the cluster at ``address``, as Flower's Ray backend would (which then reuses it).

    A private Ray declares ``resources`` (the attack workers' custom resource); a cluster's nodes declare their own.

    Done here so that our signal handlers come after Ray's own: ``ray.init`` replaces the
    SIGTERM handler of the process. The clients' own output (Flower's actor warnings, Ray's
    tips) reaches this process only with ``verbose``: what matters of it is in the events.
    """
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # Ray's C++ failure-signal handler would also take SIGTERM and kill the driver at once
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    if ray.is_initialized():
        return
    # Ray's worker processes import this project's modules: they get this process's import path
    pythonpath = os.pathsep.join(filter(None, [*sys.path, os.environ.get("PYTHONPATH")]))
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath}}
    if not address:  # "local": a private Ray, never a cluster `ray start` left running on this machine
        ray.init(address="local", runtime_env=runtime_env, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=verbose, resources=resources)
        return
    try:
        context = ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING,
                           log_to_driver=verbose)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"config key 'simulation.ray-address' is {address!r} but no Ray cluster answers there "
                          f"({str(err).splitlines()[0]}); start one with `ray start --head` or set it to ''") from err
    print(f"fl-sim: clients run on the Ray cluster at {context.address_info['gcs_address']} "
          f"({ray.cluster_resources().get('CPU', 0):g} CPUs)", file=sys.stderr, flush=True)


def _check_client_resources(sim: SimulationConfig) -> None:
    """Refuse client resources that no node of the Ray cluster has: Flower would wait for them forever."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    for key, resource, asked in (("simulation.client-cpus", "CPU", sim.client_cpus),
                                 ("simulation.client-gpus", "GPU", sim.client_gpus)):
        largest = max((node.get(resource, 0.0) for node in nodes), default=0.0)
        if asked > largest:
            where = "this machine" if not sim.ray_address else "the largest node of the Ray cluster"
            raise ConfigError(f"config key '{key}' is {asked:g} but {where} has {largest:g} {resource}s; "
                              f"set it to at most {largest:g}")


@contextlib.contextmanager
def signals_stop_run(run_dir: Path):
    """While inside, SIGINT and SIGTERM mark ``run_dir`` as ``interrupted`` and end the process (code 130).

    Flower's simulation keeps its ServerApp in a thread that an exception cannot stop, so the
    handler records what the run completed (events are already flushed, summary.json is
    written atomically) and exits; ``fl-sim run --resume`` continues from the last checkpoint.
    """
    def stop(signum: int, frame) -> None:
        last = mark_interrupted(run_dir)["last_completed_round"] if (run_dir / CONFIG).is_file() else 0
        print(f"fl-sim: interrupted after round {last}; resume with: fl-sim run --resume {run_dir}",
              file=sys.stderr, flush=True)
        os._exit(130)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
