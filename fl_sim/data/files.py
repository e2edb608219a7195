"""Where a data set's files must be, found without reading them: the data root checked before anything heavy loads.

The loaders (:mod:`fl_sim.data.datasets`) look for their files here first, so that ``fl-sim run``
can refuse a missing data root in one line before it imports torch, Flower or Ray, with the very
message the loader would give.
"""

from __future__ import annotations

from pathlib import Path

from fl_sim.config import DataConfig
from fl_sim.data.idx import find_idx
from fl_sim.dataset_registry import DATASETS, DatasetEntry
from fl_sim.errors import DataError


def idx_folder(entry: DatasetEntry, root: Path) -> Path | None:
    """The first folder holding ``entry``'s IDX files: ``root``, ``root/<name>``, then the entry's own folders."""
    if not entry.idx_folders:
        return None
    return next((folder for folder in (root, root / entry.name, *map(Path, entry.idx_folders))
                 if find_idx(folder, "train-images-idx3-ubyte")), None)


def require_files(entry: DatasetEntry, root: Path) -> None:
    """Raise the one-line :class:`DataError` a loader gives when ``entry``'s files are not under ``root``.

    Data sets that ship with the project (digits, faces) need no files; the others need what
    torchvision's layout puts under ``root`` (or, where the entry says so, IDX files in its folders),
    and an image folder needs its folder.
    """
    if entry.image_folder and not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist; set data.root to a folder with one "
                        f"sub-folder of images per class")
    if entry.torchvision is None or (root / entry.torchvision[1]).exists():
        return
    if entry.idx_folders:
        if idx_folder(entry, root) is None:
            raise DataError(f"{entry.name} not found under '{root}' nor in {', '.join(entry.idx_folders)}; install "
                            f"it with {entry.install}, or put torchvision's {entry.torchvision[0]} folder or the "
                            f"four IDX files under data.root")
        return
    tv_class, expected = entry.torchvision
    raise DataError(
        f"{entry.name} not found under '{root}' (expected {root / expected}); on a machine with internet run "
        f"python -c \"import torchvision; torchvision.datasets.{tv_class}('{root}', download=True)\" "
        f"and copy the folder here, or set data.root")


def check_data_root(config: DataConfig) -> None:
    """The data root of ``config``: raise in one line if its data set's files are not there."""
    if config.dataset in DATASETS:
        require_files(DATASETS[config.dataset], Path(config.root))
