"""The judge's ground truth for a user's own app: the images clients lent in simulation, pooled across the run.

Where fl-sim runs the federation, the judge holds the data set and a client names the samples it trained on by
position. A user's own app has its own data: its clients lend their images (:mod:`clients.audit`), and this
pool keeps every distinct image any client lent so far. An update's images are named by their positions in the
pool, and every other image of the pool, other clients' and the same client's of other rounds, is the judge's
reference, as the data set's other images are in fl-sim's own runs. The judge is rebuilt (its chance measured
anew) whenever the pool has grown since it was built.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from attacker.judge import Judge
from fl_sim import protocol
from fl_sim.config import AttackConfig
from fl_sim.data import ImageData


def lent(audit: Mapping[str, Any]) -> bool:
    """Whether a client's audit carries lent images."""
    return protocol.AUDIT_IMAGES in audit and protocol.AUDIT_LABELS in audit


class LentImages:
    """Every distinct image clients lent, each with its label, by position; and a judge over them."""

    def __init__(self, config: AttackConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self._position: dict[bytes, int] = {}
        self._images: list[np.ndarray] = []
        self._labels: list[int] = []
        self._judge: Judge | None = None

    def positions(self, audit: Mapping[str, Any]) -> list[int]:
        """The positions of the images ``audit`` lends, the new ones added to the pool."""
        images = np.load(io.BytesIO(audit[protocol.AUDIT_IMAGES]), allow_pickle=False)
        labels = np.load(io.BytesIO(audit[protocol.AUDIT_LABELS]), allow_pickle=False)
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"lent images must be uint8 [N, C, H, W] with N labels; got {images.dtype} "
                             f"{images.shape} and {len(labels)} labels")
        found = []
        for image, label in zip(images, labels):
            key = image.tobytes() + int(label).to_bytes(8, "little", signed=True)
            if key not in self._position:
                self._position[key] = len(self._images)
                self._images.append(image)
                self._labels.append(int(label))
            found.append(self._position[key])
        return found

    def judge(self) -> Judge | None:
        """A judge over the pool as it is now (``None`` while it is empty)."""
        if not self._images:
            return None
        if self._judge is None or len(self._judge.data) != len(self._images):
            data = ImageData(torch.from_numpy(np.stack(self._images)), torch.tensor(self._labels, dtype=torch.long))
            self._judge = Judge(data, self.config.success_ssim, self.config.false_leak_rate, seed=self.seed)
        return self._judge
