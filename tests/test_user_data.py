"""A user's own data by import path: tensors or a datasets.Dataset, a data set like the others; bad ones in one line."""

from __future__ import annotations

import numpy as np
import pytest

from fl_sim.config import RunConfig
from fl_sim.data import load_client_data, load_dataset
from fl_sim.errors import ConfigError, DataError
from fl_sim.results import read_events

from local_grid import run_locally
from user_modules import write_user_module

#: Loaders of the user's, in a module outside the project.
USER_MODULE = """
import numpy as np
import torch
from datasets import Dataset
from PIL import Image


def _stripes(n=120):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    images = rng.random((n, 1, 12, 12)).astype(np.float32) * 0.2
    for i, label in enumerate(labels):
        images[i, 0, :, 4 * label:4 * label + 4] += 0.8  # a bright column band per class
    return images.clip(0, 1), labels


def tensors():
    images, labels = _stripes()
    return torch.from_numpy(images), torch.from_numpy(labels)


def hugging_face():
    images, labels = _stripes()
    pictures = [Image.fromarray((np.repeat(image[0][..., None], 3, axis=2) * 255).astype(np.uint8)) for image in images]
    return Dataset.from_dict({"image": pictures, "label": labels.tolist()})


def raises():
    raise FileNotFoundError("no such folder: /mnt/scans")


def wrong_type():
    return [1, 2, 3]


def bad_pixels():
    images, labels = _stripes()
    return images * 255.0, labels


def bad_labels():
    images, labels = _stripes()
    return images, labels - 1
"""


@pytest.fixture
def user_data(tmp_path, monkeypatch) -> str:
    """The module above, written outside the project and importable: its name."""
    return write_user_module(tmp_path, monkeypatch, "user_data", USER_MODULE)


@pytest.mark.parametrize("loader, channels", [("tensors", 1), ("hugging_face", 3)])
def test_a_users_loader_is_a_data_set_like_the_others(user_data, loader, channels):
    config = RunConfig.from_flat({"data.dataset": f"{user_data}:{loader}", "data.channels": channels,
                                  "data.image-size": 16, "data.partitioner": "dirichlet"})
    dataset = load_dataset(config.data)
    assert dataset.num_classes == 3 and dataset.input_shape == (channels, 16, 16)
    assert len(dataset.train) + len(dataset.test) == 120 and len(dataset.test) == 24  # data.test-fraction 0.2
    assert len(dataset.all_images()) == 120  # every image, other clients' included, is the judge's reference
    client = load_client_data(config.data, 1, 4, seed=0)
    assert len(client.train) + len(client.val) > 0 and set(np.unique(client.train.labels)) <= {0, 1, 2}


@pytest.mark.parametrize("loader, message", [
    ("{module}:missing", "cannot be imported: AttributeError"),
    ("no_such_loaders:load", "cannot be imported: ModuleNotFoundError"),
    ("{module}:raises", "the loader raised FileNotFoundError: no such folder: /mnt/scans"),
    ("{module}:wrong_type", "returned a list; it must return (images, labels) or a datasets.Dataset"),
    ("{module}:bad_pixels", "they must be in [0, 1] (or uint8)"),
    ("{module}:bad_labels", "they must be 120 integers from 0"),
])
def test_a_bad_loader_is_refused_in_one_line(user_data, loader, message):
    config = RunConfig.from_flat({"data.dataset": loader.format(module=user_data)})
    with pytest.raises(DataError) as raised:
        load_dataset(config.data)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_data_set_names_that_are_neither_ours_nor_an_import_path_are_refused():
    with pytest.raises(ConfigError, match=r"must be one of digits, faces, .* or a loader of your own as "
                                          r"package.module:loader; got 'digitz'"):
        RunConfig.from_flat({"data.dataset": "digitz"})


def test_a_run_on_a_users_data_attacks_and_judges_every_update(user_data, tiny_config):
    config = tiny_config.with_overrides({"data.dataset": f"{user_data}:tensors", "model.width": 64,
                                         "attack.enabled": True, "attack.blocking": True,
                                         "defense.per-client": "", "num-server-rounds": 1})
    attacks = [e for e in read_events(run_locally(config)) if e["event"] == "attack"]
    assert len(attacks) == 3 and all(e["verdict"] in ("leaked", "not leaked") for e in attacks)
