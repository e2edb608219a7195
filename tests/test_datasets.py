"""Data set loaders, exercised on small files written in each data set's real on-disk format."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image

from fl_sim.config import DataConfig
from fl_sim.data import convert, load_dataset
from fl_sim.dataset_registry import DATASETS
from fl_sim.errors import DataError

RNG = np.random.default_rng(0)


def test_digits_is_embedded_with_a_fixed_split():
    data = load_dataset(DataConfig())
    assert data.num_classes == 10
    assert len(data.train) + len(data.test) == 1797
    assert data.input_shape == (1, 32, 32)
    assert data.train.images.dtype.is_floating_point is False
    images, labels = data.train.tensors()
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.9
    assert sorted(labels.unique().tolist()) == list(range(10))
    again = load_dataset(DataConfig(image_size=32, channels=1, test_fraction=0.2))
    assert again is data  # cached per process


def test_digits_served_at_other_sizes_and_rgb():
    data = load_dataset(DataConfig(image_size=16, channels=3))
    assert data.input_shape == (3, 16, 16)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (LeCun): magic 0x0000 08 ndim, big-endian dimension sizes, then raw uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_loads_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    for prefix, count in (("train", 20), ("t10k", 6)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", RNG.integers(0, 256, (count, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    data = load_dataset(DataConfig(dataset=name, root=str(tmp_path), image_size=32, channels=3))
    assert (len(data.train), len(data.test), data.num_classes) == (20, 6, 10)
    assert data.input_shape == (3, 32, 32)
    assert data.train.labels.tolist() == [i % 10 for i in range(20)]


def _pickle(path: Path, payload: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name, cls, label_key, meta_key, num_classes", [
    ("cifar10", tvd.CIFAR10, "labels", "label_names", 10),
    ("cifar100", tvd.CIFAR100, "fine_labels", "fine_label_names", 100),
])
def test_cifar_loads_pickled_batches(tmp_path, monkeypatch, name, cls, label_key, meta_key, num_classes):
    """Writes CIFAR's python-pickle batches; torchvision's md5 list is pointed at these files."""
    folder = tmp_path / cls.base_folder
    def batch(count):
        return {"data": RNG.integers(0, 256, (count, 3072), dtype=np.uint8), label_key: list(range(count))}
    train_list = [[file, _pickle(folder / file, batch(4))] for file, _ in cls.train_list]
    test_list = [[file, _pickle(folder / file, batch(3))] for file, _ in cls.test_list]
    meta_md5 = _pickle(folder / cls.meta["filename"], {meta_key: [f"class{i}" for i in range(num_classes)]})
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": meta_md5})
    data = load_dataset(DataConfig(dataset=name, root=str(tmp_path), image_size=32, channels=3))
    assert len(data.train) == 4 * len(train_list) and len(data.test) == 3
    assert data.num_classes == num_classes and data.input_shape == (3, 32, 32)
    first = np.frombuffer(pickle.loads((folder / train_list[0][0]).read_bytes())["data"][0].tobytes(), np.uint8)
    assert np.array_equal(data.train.images[0].numpy().reshape(-1), first)  # CHW order kept, no resizing


def test_corrupted_cifar_says_so(tmp_path):
    folder = tmp_path / tvd.CIFAR10.base_folder
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="incomplete or corrupted"):
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)))


def test_image_folder_loads_class_subfolders(tmp_path):
    for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("RGB", (40 + i, 30), color).save(tmp_path / label / f"{i}.png")
    data = load_dataset(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=24, channels=3,
                                   test_fraction=0.2))
    assert (len(data.train), len(data.test), data.num_classes) == (8, 2, 2)
    images, labels = data.train.tensors()
    red = images[labels == 0][:, 0].mean()
    assert images.shape[1:] == (3, 24, 24) and red > 0.99


@pytest.mark.parametrize("damage", [lambda raw: b"", lambda raw: raw[: len(raw) // 2], lambda raw: b"GIF89a" + raw])
def test_an_unreadable_file_in_an_image_folder_is_one_line_naming_it(tmp_path, damage):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 80, 0, 0)).save(tmp_path / label / f"{i}.png")
    broken = tmp_path / "b" / "1.png"
    broken.write_bytes(damage(broken.read_bytes()))
    with pytest.raises(DataError, match="1.png' is not a readable image") as raised:
        load_dataset(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=16, channels=3))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("labels, message", [(np.array([0, 1, 12, 3] * 5), "a train label is 12, outside 0..9"),
                                             (np.arange(19) % 10, "has 20 images but 19 labels")])
def test_mnist_labels_that_do_not_fit_their_images_fail_before_any_run(tmp_path, labels, message):
    raw = tmp_path / "MNIST" / "raw"
    _write_idx(raw / "train-images-idx3-ubyte", RNG.integers(0, 256, (20, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", labels)
    _write_idx(raw / "t10k-images-idx3-ubyte", RNG.integers(0, 256, (4, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(4))
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)))
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("name, hint", [("mnist", "download=True"), ("fashion-mnist", "apt-get install dataset-"),
                                        ("cifar10", "download=True"), ("cifar100", "download=True"),
                                        ("imagefolder", "sub-folder")])
def test_missing_root_says_how_to_get_the_data(tmp_path, monkeypatch, name, hint):
    _fashion_package(monkeypatch, tmp_path / "no-package")
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(dataset=name, root=str(tmp_path / "nowhere")))
    message = str(raised.value)
    assert "\n" not in message
    assert hint in message


def _fashion_package(monkeypatch, folder: Path) -> None:
    """Where, for the test, Debian's dataset-fashion-mnist package installs its IDX files."""
    entry = dataclasses.replace(DATASETS["fashion-mnist"], idx_folders=(str(folder),))
    monkeypatch.setitem(DATASETS._entries, entry.name, entry)


def _write_fashion_idx(folder: Path, compress: bool) -> None:
    for prefix, count in (("train", 12), ("t10k", 4)):
        for kind, array in (("images-idx3-ubyte", RNG.integers(0, 256, (count, 28, 28))),
                            ("labels-idx1-ubyte", np.arange(count) % 10)):
            path = folder / f"{prefix}-{kind}"
            _write_idx(path, array)
            if compress:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()


def test_fashion_mnist_found_where_debian_installs_it(tmp_path, monkeypatch):
    package = tmp_path / "usr-share-datasets-fashion-mnist"
    _write_fashion_idx(package, compress=True)
    _fashion_package(monkeypatch, package)
    data = load_dataset(DataConfig(dataset="fashion-mnist", root=str(tmp_path / "empty-root"), image_size=28))
    assert (len(data.train), len(data.test), data.num_classes, data.input_shape) == (12, 4, 10, (1, 28, 28))
    assert data.train.labels.tolist() == [i % 10 for i in range(12)]


def test_fashion_mnist_idx_files_under_the_root_come_first(tmp_path, monkeypatch):
    _write_fashion_idx(tmp_path / "fashion-mnist", compress=False)
    _fashion_package(monkeypatch, tmp_path / "no-package")
    data = load_dataset(DataConfig(dataset="fashion-mnist", root=str(tmp_path), image_size=32, channels=3))
    assert (len(data.train), len(data.test), data.input_shape) == (12, 4, (3, 32, 32))


@pytest.mark.parametrize("damage", [lambda raw: raw[:-5], lambda raw: b"\x00\x00\x0d" + raw[3:], lambda raw: b""])
def test_damaged_idx_file_is_one_line_naming_it(tmp_path, monkeypatch, damage):
    _write_fashion_idx(tmp_path, compress=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    _fashion_package(monkeypatch, tmp_path / "no-package")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte") as raised:
        load_dataset(DataConfig(dataset="fashion-mnist", root=str(tmp_path), image_size=16))
    assert "\n" not in str(raised.value)


def test_faces_are_embedded_with_their_two_classes():
    data = load_dataset(DataConfig(dataset="faces", image_size=32, test_fraction=0.2))
    assert (len(data.train), len(data.test), data.num_classes, data.input_shape) == (160, 40, 2, (1, 32, 32))
    labels = np.concatenate([data.train.labels.numpy(), data.test.labels.numpy()])
    assert np.bincount(labels).tolist() == [100, 100]
    images, _ = data.train.tensors()
    assert images.std() > 0.1


def test_converter_writes_a_tensor_file_as_an_image_folder_a_run_can_load(tmp_path, monkeypatch, capsys):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pixels = torch.rand(9, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2] * 3)
    normalised = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.save({"images": normalised, "labels": labels}, tmp_path / "victims.dict")
    monkeypatch.setattr("sys.argv", ["convert", str(tmp_path / "victims.dict"), str(tmp_path / "folder"),
                                     "--mean", *map(str, mean), "--std", *map(str, std)])
    convert.main()
    assert "wrote 9 images" in capsys.readouterr().out
    data = load_dataset(DataConfig(dataset="imagefolder", root=str(tmp_path / "folder"), image_size=8, channels=3,
                                   test_fraction=0.2))
    loaded = torch.cat([data.train.tensors()[0], data.test.tensors()[0]])
    loaded_labels = torch.cat([data.train.labels, data.test.labels])
    assert data.num_classes == 3 and len(loaded) == 9
    for image, label in zip(loaded, loaded_labels):  # every image comes back, 8-bit exact, with its label
        distance, nearest = (pixels - image).abs().flatten(1).max(dim=1).values.min(dim=0)
        assert distance <= 0.5 / 255 + 1e-6 and labels[nearest] == label


def test_converter_of_a_missing_file_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["convert", str(tmp_path / "absent.dict"), str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exited:
        convert.main()
    assert exited.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_registered_data_set_needs_no_other_edit(tmp_path, monkeypatch):
    """One entry and its loader (tests/toy_dataset.py): the setting validates, its root is checked, it loads."""
    from fl_sim.config import RunConfig
    from fl_sim.data.files import check_data_root
    from fl_sim.dataset_registry import DatasetEntry

    entry = DatasetEntry("checkerboards", "toy_dataset:load_checkerboards")
    monkeypatch.setitem(DATASETS._entries, entry.name, entry)  # registered for this test only
    config = RunConfig.from_flat({"data.dataset": "checkerboards", "data.image-size": 8,
                                  "data.root": str(tmp_path / "nowhere")})
    check_data_root(config.data)  # embedded: no files needed
    data = load_dataset(config.data)
    assert (len(data.train), len(data.test), data.num_classes, data.input_shape) == (30, 10, 2, (1, 8, 8))
    assert data.train.labels.tolist()[:4] == [0, 1, 0, 1] and int(data.train.images[0, 0, 0, 1]) == 255
