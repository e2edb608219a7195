"""PNG grids of ground truth (top row) over reconstruction (bottom row), written atomically.

Without ground truth (a deployment) the grid is the reconstruction's row alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import save_image

#: Small images are enlarged (nearest neighbour) to at least this many pixels per side.
MIN_SIDE = 64


def save_grid(path: Path, truth: torch.Tensor | None, reconstruction: torch.Tensor) -> None:
    """Write ``truth`` ``[B, C, H, W]`` above ``reconstruction`` (same shape), or the reconstruction alone, as a PNG."""
    rows = (reconstruction if truth is None else torch.cat([truth, reconstruction])).float().clamp(0, 1)
    scale = max(1, MIN_SIDE // rows.shape[-1])
    if scale > 1:
        rows = F.interpolate(rows, scale_factor=scale, mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the suffix tells save_image the format
    try:
        save_image(rows, str(temporary), nrow=len(reconstruction), padding=2, pad_value=1.0)
        os.replace(temporary, path)  # a reader sees the whole PNG or none: no zero-byte files
    finally:
        temporary.unlink(missing_ok=True)
