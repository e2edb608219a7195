"""Image data sets, loaded whole into memory as uint8 tensors of one size and channel count.

The embedded default is scikit-learn's ``digits`` (1,797 real 8x8 handwritten digits), which
needs no download; ``faces`` is scikit-image's subset of Labeled Faces in the Wild (100 faces
and 100 non-faces, 25x25 gray), embedded as well. MNIST, Fashion-MNIST, CIFAR-10/100 and a
user's ``ImageFolder`` load through torchvision from a local root (``download`` is never
attempted: these machines may have no internet); Fashion-MNIST is also found where Debian's
``dataset-fashion-mnist`` package installs it. A user's own loader is named by import path
(``data.dataset=package.module:loader``), its result split like digits'. Every data set is served
at ``data.image-size`` and ``data.channels`` with pixel values in [0, 1], the range in which
reconstructions are judged.
"""

from __future__ import annotations

import functools
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fl_sim.config import DataConfig
from fl_sim.data.files import idx_folder, require_files
from fl_sim.data.idx import find_idx, read_idx
from fl_sim.dataset_registry import DATASETS, DatasetEntry
from fl_sim.errors import DataError
from fl_sim.registry import load

#: The train/test split of data sets without their own split is fixed, whatever the run seed.
SPLIT_SEED = 0



@dataclass(frozen=True)
class ImageData:
    """Images as uint8 ``[N, C, H, W]`` with int64 labels ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray | torch.Tensor) -> ImageData:
        """The samples at ``indices`` (positions in this data)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageData(self.images[index], self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] and labels, ready for a model."""
        return self.images.float().div_(255.0), self.labels


@dataclass(frozen=True)
class Dataset:
    """A data set's training and test splits and its number of classes."""

    name: str
    train: ImageData
    test: ImageData
    num_classes: int

    def all_images(self) -> ImageData:
        """Both splits as one: every image of the data set (what the attack's judge measures chance on)."""
        return ImageData(torch.cat([self.train.images, self.test.images]),
                         torch.cat([self.train.labels, self.test.labels]))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image."""
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


def load_dataset(config: DataConfig) -> Dataset:
    """Load the data set the config names, at its size and channel count (cached per process)."""
    return _load_cached(config.dataset, config.root, config.image_size, config.channels, config.test_fraction)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str, size: int, channels: int, test_fraction: float) -> Dataset:
    if name in DATASETS:
        entry = DATASETS[name]
        loaded = load(entry.loader)(entry, Path(root), test_fraction, size)
    else:
        loaded = _user_loader(name)(Path(root), test_fraction, size)
    (train_x, train_y), (test_x, test_y), num_classes = loaded
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        _check_labels(name, root, split, len(images), np.asarray(labels), num_classes)
    return Dataset(
        name=name,
        train=ImageData(_conform(train_x, size, channels), torch.as_tensor(train_y, dtype=torch.long)),
        test=ImageData(_conform(test_x, size, channels), torch.as_tensor(test_y, dtype=torch.long)),
        num_classes=num_classes,
    )


def _check_labels(name: str, root: str, split: str, num_images: int, labels: np.ndarray, num_classes: int) -> None:
    """One line, before any run starts, for files whose images and labels do not go together."""
    if num_images != len(labels):
        raise DataError(f"{name} under '{root}': its {split} split has {num_images} images but {len(labels)} "
                        f"labels; re-copy the data set or set data.root")
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if len(outside):
        raise DataError(f"{name} under '{root}': a {split} label is {int(outside[0])}, outside 0..{num_classes - 1}; "
                        f"re-copy the data set or set data.root")


def _conform(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize uint8/float ``[N, C, H, W]`` images to ``size`` and ``channels``; return uint8."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.shape[1] == 3 and channels == 1:
        luminance = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x * luminance).sum(dim=1, keepdim=True)
    elif x.shape[1] == 1 and channels == 3:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _fixed_split(num: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SPLIT_SEED).permutation(num)
    num_test = max(1, int(round(num * test_fraction)))
    return np.sort(order[num_test:]), np.sort(order[:num_test])


Arrays = tuple[torch.Tensor, np.ndarray]
Loader = Callable[[Path, float, int], tuple[Arrays, Arrays, int]]


def load_digits(_entry: DatasetEntry, _root: Path, test_fraction: float, _size: int) -> tuple[Arrays, Arrays, int]:
    """scikit-learn's embedded digits: 1,797 8x8 images with 17 gray levels, 10 classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = digits.target.astype(np.int64)
    train, test = _fixed_split(len(labels), test_fraction)
    return (images[train], labels[train]), (images[test], labels[test]), 10


def load_faces(_entry: DatasetEntry, _root: Path, test_fraction: float, _size: int) -> tuple[Arrays, Arrays, int]:
    """scikit-image's Labeled Faces in the Wild subset.

    200 25x25 gray images, class 0 face (the first 100), class 1 non-face (the other 100, patches of natural images).
    """
    from skimage.data import lfw_subset

    images = torch.as_tensor(lfw_subset(), dtype=torch.float32).unsqueeze(1)
    labels = (np.arange(len(images)) >= len(images) // 2).astype(np.int64)
    train, test = _fixed_split(len(labels), test_fraction)
    return (images[train], labels[train]), (images[test], labels[test]), 2


def load_torchvision_or_idx(entry: DatasetEntry, root: Path, test_fraction: float,
                            size: int) -> tuple[Arrays, Arrays, int]:
    """A data set from torchvision's layout under ``root``, else from its IDX files (Fashion-MNIST).

    IDX files (plain or ``.gz``) are looked for in ``root``, ``root/<name>`` or the entry's own folders (Debian's
    package folder for Fashion-MNIST).
    """
    require_files(entry, root)
    if (root / entry.torchvision[1]).exists():
        return load_torchvision(entry, root, test_fraction, size)
    folder = idx_folder(entry, root)
    splits = []
    for prefix in ("train", "t10k"):
        paths = [find_idx(folder, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
        if None in paths:
            raise DataError(f"{entry.name} under '{folder}' is incomplete: {prefix}-images-idx3-ubyte and "
                            f"{prefix}-labels-idx1-ubyte (or .gz) are both needed")
        images, labels = (read_idx(path) for path in paths)  # counts are checked with every loader's
        splits.append((torch.as_tensor(images.copy()).unsqueeze(1), labels.astype(np.int64)))
    return splits[0], splits[1], 10


#: What torchvision's readers raise on files of the wrong format (its MNIST reader asserts on the
#: header; its CIFAR reader unpickles).
_UNREADABLE = (RuntimeError, AssertionError, ValueError, OSError, EOFError, KeyError, pickle.UnpicklingError)


def load_torchvision(entry: DatasetEntry, root: Path, _test_fraction: float, _size: int) -> tuple[Arrays, Arrays, int]:
    """One of torchvision's classic data sets, read from ``root`` in its own split, without downloading."""
    import torchvision.datasets as tvd

    require_files(entry, root)
    cls = getattr(tvd, entry.torchvision[0])
    try:
        splits = [cls(str(root), train=train, download=False) for train in (True, False)]
    except _UNREADABLE as err:  # "Dataset not found or corrupted", or a parser choking on bad bytes
        detail = f"{type(err).__name__}: {err}" if str(err) else f"{type(err).__name__} while parsing its files"
        raise DataError(f"{entry.name} under '{root}' is incomplete or corrupted ({detail}); "
                        f"re-copy it or set data.root") from err
    out = []
    for split in splits:
        data = torch.as_tensor(np.asarray(split.data))
        images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
        out.append((images.contiguous(), np.asarray(split.targets, dtype=np.int64)))
    return out[0], out[1], len(splits[0].classes)


def load_image_folder(entry: DatasetEntry, root: Path, test_fraction: float, size: int) -> tuple[Arrays, Arrays, int]:
    """A user's images, one sub-folder per class (torchvision's ``ImageFolder`` layout)."""
    import torchvision.datasets as tvd
    from torchvision.transforms.functional import pil_to_tensor

    require_files(entry, root)
    try:
        folder = tvd.ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"'{root}' is not an image folder ({err}); put each class's images in a "
                        f"sub-folder of data.root") from err
    images = []
    for path, _ in folder.samples:
        picture = _read_picture(folder.loader, path)
        images.append(F.interpolate(pil_to_tensor(picture).unsqueeze(0).float() / 255.0,
                                    size=(size, size), mode="bilinear", antialias=True))
    stacked = torch.cat(images)
    labels = np.asarray(folder.targets, dtype=np.int64)
    train, test = _fixed_split(len(labels), test_fraction)
    return (stacked[train], labels[train]), (stacked[test], labels[test]), len(folder.classes)


def _read_picture(loader: Callable, path: str):
    """An image file as RGB; a file that is not a readable image is a one-line user error naming it."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = loader(path)
            picture.load()
        return picture.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"'{path}' is not a readable image ({type(err).__name__}: {err}); "
                        f"remove or replace it") from err


def _user_loader(path: str) -> Loader:
    """A user's loader by import path, as a data set like the others (split at ``data.test-fraction``).

    ``package.module:loader`` takes no arguments and returns ``(images, labels)`` (tensors or arrays: images
    ``[N, C, H, W]`` or ``[N, H, W]``, in [0, 1] or uint8; integer labels from 0) or a ``datasets.Dataset`` with
    ``image`` and ``label`` columns. What it gets wrong is one line.
    """
    def load_users(_root: Path, test_fraction: float, _size: int) -> tuple[Arrays, Arrays, int]:
        key = f"config key 'data.dataset' ({path})"
        try:
            loader = load(path)
        except (ImportError, AttributeError) as err:
            raise DataError(f"{key} cannot be imported: {type(err).__name__}: {err}; make its package importable "
                            f"(installed, or its folder on PYTHONPATH)") from err
        try:
            loaded = loader()
        except Exception as err:  # a user's loader: whatever it raises is the user's to fix
            raise DataError(f"{key}: the loader raised {type(err).__name__}: {err}") from err
        images, labels = _images_and_labels(loaded, key)
        train, test = _fixed_split(len(labels), test_fraction)
        return (images[train], labels[train]), (images[test], labels[test]), int(labels.max()) + 1

    return load_users


def _images_and_labels(loaded, key: str) -> tuple[torch.Tensor, np.ndarray]:
    """A user loader's result as ``[N, C, H, W]`` images and int64 labels; a one-line DataError if it is not one."""
    if hasattr(loaded, "column_names"):  # a datasets.Dataset
        if not {"image", "label"} <= set(loaded.column_names):
            raise DataError(f"{key} returned a datasets.Dataset with columns {loaded.column_names}; it needs "
                            f"'image' and 'label'")
        loaded = (np.stack([np.asarray(image) for image in loaded["image"]]), np.asarray(loaded["label"]))
    if not isinstance(loaded, tuple) or len(loaded) != 2:
        raise DataError(f"{key} returned a {type(loaded).__name__}; it must return (images, labels) or a "
                        f"datasets.Dataset")
    images, labels = torch.as_tensor(np.asarray(loaded[0])), np.asarray(loaded[1])
    if images.ndim == 3:
        images = images.unsqueeze(1)
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.permute(0, 3, 1, 2)  # channels last, as PIL and datasets give them
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) < 2:
        raise DataError(f"{key} returned images of shape {tuple(images.shape)}; they must be [N, C, H, W] with "
                        f"C 1 or 3 (or [N, H, W]), N >= 2")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError(f"{key} returned labels of shape {labels.shape} and type {labels.dtype}; they must be "
                        f"{len(images)} integers from 0")
    if images.dtype != torch.uint8 and (images.min() < 0 or images.max() > 1):
        raise DataError(f"{key} returned pixels from {float(images.min()):g} to {float(images.max()):g}; they must "
                        f"be in [0, 1] (or uint8)")
    return images.contiguous(), labels.astype(np.int64)
