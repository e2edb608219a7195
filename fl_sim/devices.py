"""Where the server computes: the torch device ``attack.device`` resolves to, and its CPU threads."""

from __future__ import annotations

import math
import os

import torch

from fl_sim.errors import ConfigError


def resolve_device(requested: str, key: str = "attack.device") -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a visible GPU is a user error naming ``key``."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key '{key}' is cuda but no CUDA GPU is visible; set {key}=auto or cpu")
    return torch.device("cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu")


def server_threads(requested: int, num_clients: int, client_cpus: float, clients_here: bool) -> int:
    """The torch threads of the server process: ``requested``, or for 0 the cores left free by the clients.

    The simulated clients are Ray actors on this machine (``clients_here``), each reserving
    ``client_cpus`` cores; intra-op threads of an attack that compete with them for the same
    cores slow both down (2 threads ran IG 14x slower than 1 on a loaded 2-core machine).
    """
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0))
    if not clients_here:
        return cores
    busy = min(num_clients, math.floor(cores / client_cpus)) * client_cpus
    return max(1, math.floor(cores - busy))
