"""Every ``data.dataset`` fl-sim loads itself, declared once: its loader and where its files must be.

An entry names its loader by import path (so that a configuration, and a missing data root, are checked
without importing torch) and says where its files are: nowhere (it ships with scikit-learn or scikit-image),
torchvision's layout under ``data.root`` (the class that reads it and the file that shows it is there), IDX
files in more places (Fashion-MNIST, which Debian packages), or ``data.root`` itself, one sub-folder of images
per class. The configuration's allowed values, the data-root check (:mod:`fl_sim.data.files`) and
:func:`fl_sim.data.load_dataset` read this table. Adding a data set is one ``DATASETS.register`` call and its
loader: ``loader(entry, root, test_fraction, size) -> ((train images, labels), (test images, labels), classes)``.
A user's own loader is named by import path instead (``data.dataset=package.module:loader``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_sim.registry import Registry


@dataclass(frozen=True)
class DatasetEntry:
    """One data set.

    Attributes:
        name: the value of ``data.dataset``.
        loader: the function (``module:function``) that reads it.
        torchvision: torchvision's class that reads it, and the file under ``data.root`` that shows it is there;
            None for one that is not read through torchvision.
        idx_folders: more folders where its IDX files are found (besides ``data.root`` and ``data.root/<name>``);
            () where it is read from torchvision's layout alone.
        install: how to put its IDX files into ``idx_folders``, for the message when they are missing.
        image_folder: ``data.root`` is the data set itself, one sub-folder of images per class.
    """

    name: str
    loader: str
    torchvision: tuple[str, str] | None = None
    idx_folders: tuple[str, ...] = ()
    install: str | None = None
    image_folder: bool = False

    @property
    def embedded(self) -> bool:
        """Whether it needs no files under ``data.root`` (it ships with the project's dependencies)."""
        return self.torchvision is None and not self.idx_folders and not self.image_folder


#: Every data set fl-sim loads itself, by name.
DATASETS: Registry[DatasetEntry] = Registry("data set")

_LOADERS = "fl_sim.data.datasets:"
for _entry in (
    DatasetEntry("digits", _LOADERS + "load_digits"),
    DatasetEntry("faces", _LOADERS + "load_faces"),
    DatasetEntry("mnist", _LOADERS + "load_torchvision", torchvision=("MNIST", "MNIST/raw/train-images-idx3-ubyte")),
    DatasetEntry("fashion-mnist", _LOADERS + "load_torchvision_or_idx",
                 torchvision=("FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte"),
                 # Debian's dataset-fashion-mnist package (MIT) installs the gzipped IDX files here
                 idx_folders=("/usr/share/datasets/fashion-mnist",),
                 install="`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)"),
    DatasetEntry("cifar10", _LOADERS + "load_torchvision", torchvision=("CIFAR10", "cifar-10-batches-py/data_batch_1")),
    DatasetEntry("cifar100", _LOADERS + "load_torchvision", torchvision=("CIFAR100", "cifar-100-python/train")),
    DatasetEntry("imagefolder", _LOADERS + "load_image_folder", image_folder=True),
):
    DATASETS.register(_entry)
