"""Picture grids for the README: one labelled row of images per attack setting, ground truth first.

A reader believes a grid of faces before a table of SSIMs: each row shows what the attacker
recovered for the same victims, with each reconstruction's SSIM under it (red where it leaks).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import torch  # noqa: E402 - after the backend, with the rest

Row = tuple[str, torch.Tensor, list[float] | None]


def save_rows(path: Path, rows: list[Row], title: str, threshold: float = 0.6) -> Path:
    """Write ``rows`` (label, images ``[N, C, H, W]`` in [0, 1], SSIM per image or None) as one PNG."""
    columns = max(len(images) for _, images, _ in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.0 * columns + 1.6, 1.15 * len(rows) + 0.5),
                                squeeze=False)
    for r, (label, images, scores) in enumerate(rows):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c >= len(images):
                axis.axis("off")
                continue
            image = images[c].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            if scores is not None:
                axis.set_xlabel(f"{scores[c]:.2f}", fontsize=7, labelpad=1,
                                color="tab:red" if scores[c] >= threshold else "black")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def matched(reconstruction: torch.Tensor, matches: list[int], count: int) -> tuple[torch.Tensor, list[int]]:
    """Reconstructions reordered under the ground truth they were matched to (``count`` images).

    The positions of truths no reconstruction matched stay blank (zeros).
    """
    ordered = torch.zeros((count, *reconstruction.shape[1:]))
    slots = []
    for image, match in zip(reconstruction, matches):
        if match < count and match not in slots:
            ordered[match] = image
            slots.append(match)
    return ordered, slots
