"""Where a data set's files must be, found without reading them: the data root checked before anything heavy loads.

The loaders (:mod:`fl_sim.data.datasets`) look for their files here first, so that ``fl-sim run``
can refuse a missing data root in one line before it imports torch, Flower or Ray, with the very
message the loader would give.
"""

from __future__ import annotations

from pathlib import Path

from fl_sim.config import DataConfig
from fl_sim.data.idx import find_idx
from fl_sim.errors import DataError

#: Where Debian's ``dataset-fashion-mnist`` package (MIT) installs Fashion-MNIST's gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

#: torchvision's class of each classic data set, and the file under ``data.root`` that shows it is there.
TORCHVISION_LAYOUT = {
    "mnist": ("MNIST", "MNIST/raw/train-images-idx3-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/data_batch_1"),
    "cifar100": ("CIFAR100", "cifar-100-python/train"),
}


def fashion_mnist_idx_folder(root: Path) -> Path | None:
    """The first folder holding Fashion-MNIST's IDX files: ``root``, ``root/fashion-mnist``, then Debian's."""
    return next((folder for folder in (root, root / "fashion-mnist", DEBIAN_FASHION_MNIST)
                 if find_idx(folder, "train-images-idx3-ubyte")), None)


def require_files(name: str, root: Path) -> None:
    """Raise the one-line :class:`DataError` a loader gives when ``name``'s files are not under ``root``.

    Data sets that ship with the project (digits, faces) need no files; the others need what
    torchvision's layout puts under ``root`` (Fashion-MNIST also takes IDX files, Debian's
    included), and an image folder needs its folder.
    """
    if name == "fashion-mnist":
        if not (root / TORCHVISION_LAYOUT[name][1]).exists() and fashion_mnist_idx_folder(root) is None:
            raise DataError(f"fashion-mnist not found under '{root}' nor in {DEBIAN_FASHION_MNIST}; install it "
                            f"with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put torchvision's "
                            f"FashionMNIST folder or the four IDX files under data.root")
    elif name in TORCHVISION_LAYOUT:
        tv_class, expected = TORCHVISION_LAYOUT[name]
        if not (root / expected).exists():
            raise DataError(
                f"{name} not found under '{root}' (expected {root / expected}); on a machine with internet run "
                f"python -c \"import torchvision; torchvision.datasets.{tv_class}('{root}', download=True)\" "
                f"and copy the folder here, or set data.root")
    elif name == "imagefolder" and not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist; set data.root to a folder with one "
                        f"sub-folder of images per class")


def check_data_root(config: DataConfig) -> None:
    """The data root of ``config``: raise in one line if its data set's files are not there."""
    require_files(config.dataset, Path(config.root))
