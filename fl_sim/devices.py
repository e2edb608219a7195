"""Which torch device a setting such as ``attack.device`` (auto, cpu or cuda) resolves to on this machine."""

from __future__ import annotations

import torch

from fl_sim.errors import ConfigError


def resolve_device(requested: str, key: str = "attack.device") -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a visible GPU is a user error naming ``key``."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key '{key}' is cuda but no CUDA GPU is visible; set {key}=auto or cpu")
    return torch.device("cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu")
