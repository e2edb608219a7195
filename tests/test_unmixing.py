"""CPA's unmixing of a fully connected first layer: exact where it must be, and where it applies."""

from __future__ import annotations

import dataclasses

import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.attacks.isolation import input_layer
from attacker.attacks.unmixing import COMPLETION_SWEEPS, WhitenedLayer
from attacker.completion import KeptRange, complete
from attacker.observation import Observation
from attacker.victim import Victim
from clients.defenses import kept_by_magnitude
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

#: One SGD step of an MLP on a batch of 4 digits: what a planted update replaces the first layer of.
MLP_BATCH = {"model.name": "mlp", "model.width": 64, "model.init": "default", "train.optimizer": "sgd",
             "train.lr": 0.1, "train.batch-size": 4, "train.local-steps": 1, "defense.per-client": ""}


def _observed(flat: dict, held: list[int]) -> tuple[RunConfig, Victim, Observation, torch.Tensor]:
    config = RunConfig.from_flat(flat)
    updates, data = intercepted_updates(config, [held])
    dataset = load_dataset(config.data)
    obs = Observation.under(updates[0], config.defense)
    victim = Victim.from_arrays(Architecture.of(config, dataset.input_shape, dataset.num_classes), obs.global_arrays,
                                torch.device("cpu"))
    return config, victim, obs, data[0].tensors()[0]


def _planted(victim: Victim, obs: Observation, images: torch.Tensor, seed: int = 0) -> Observation:
    """``obs`` with its first layer's update replaced by a dense mixing of ``images``: no row isolates one of them."""
    layer = input_layer(victim)
    rows = obs.update[f"{layer}.weight"].shape[0]
    mixing = torch.randn(rows, len(images), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return dataclasses.replace(obs, update={**obs.update, f"{layer}.weight": (mixing @ images.flatten(1)).float(),
                                            f"{layer}.bias": mixing.sum(dim=1).float()})


def _blobs(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` sparse images of a few bright squares each, at random: sources as independent as ICA assumes."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, 32, 32, dtype=torch.float64)
    for image in images:
        for _ in range(3):
            row, col = torch.randint(0, 26, (2,), generator=generator).tolist()
            image[0, row:row + 6, col:col + 6] = 0.5 + 0.5 * torch.rand(1, generator=generator, dtype=torch.float64)
    return images


def _best_errors(reconstruction: torch.Tensor, images: torch.Tensor) -> list[float]:
    """For each true image, the largest pixel error of the reconstruction closest to it."""
    flat = reconstruction.flatten(1).double()
    return [float((flat - image.flatten()).abs().max(dim=1).values.min()) for image in images.double()]


def test_the_separating_unmixing_gives_the_planted_images_back_exactly():
    _, victim, obs, images = _observed(MLP_BATCH, [3, 4, 5, 6])
    planted = _planted(victim, obs, images.double())
    whitened = WhitenedLayer.of(planted, input_layer(victim))
    assert whitened.rank == whitened.count == 4  # the rank counts the images
    observed = (whitened.whitened + whitened.whitened_mean).double()  # the whitened rows, centring undone
    separating = images.flatten(1).double() @ torch.linalg.pinv(observed)  # what the optimisation looks for
    recovered = whitened.images(separating.float() * torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))  # any scale, sign
    assert max(_best_errors(recovered, images)) < 1e-3


def test_cpa_unmixes_images_that_no_neuron_isolates():
    config, victim, obs, _ = _observed(MLP_BATCH, [3, 4, 5, 6])
    images = _blobs(4)
    planted = _planted(victim, obs, images)
    settings = AttackSettings.from_config(config.attack, seed=0)
    [isolated] = INVERSIONS["isolation"].run(victim, [planted], settings)
    assert min(_best_errors(isolated.images, images)) > 0.3  # every row mixes all four: nothing to read off
    [unmixed] = INVERSIONS["cpa"].run(victim, [planted], settings.for_method("cpa", iterations=3000, lr=0.03))
    errors = sorted(_best_errors(unmixed.images, images))
    assert len(unmixed.images) == 4 and errors[0] < 0.01 and errors[2] < 0.15, errors
    assert "rank 4" in unmixed.notes[0]


def test_cpa_says_where_it_does_not_apply():
    why_not = INVERSIONS["cpa"].why_not
    _, victim, obs, _ = _observed(MLP_BATCH, [3, 4, 5, 6])
    assert why_not(victim, obs) is None
    _, _, adam, _ = _observed({**MLP_BATCH, "train.optimizer": "adam", "train.lr": 0.001}, [3, 4, 5, 6])
    assert "adam" in why_not(victim, adam)
    _, _, one, _ = _observed({**MLP_BATCH, "train.batch-size": 1}, [3])
    assert "one image" in why_not(victim, one)
    _, narrow, wide_batch, _ = _observed({**MLP_BATCH, "model.width": 2}, [3, 4, 5, 6])
    assert "2 neurons, fewer than the 4 images" in why_not(narrow, wide_batch)
    _, _, pruned, _ = _observed({**MLP_BATCH, "defense.name": "topk"}, [3, 4, 5, 6])
    assert why_not(victim, pruned) is None  # 90% pruned: far more entries kept than a rank-4 layer has parameters
    _, _, bare, _ = _observed({**MLP_BATCH, "defense.name": "topk", "defense.topk-prune-ratio": 0.999}, [3, 4, 5, 6])
    assert "no completion determines its mixtures" in why_not(victim, bare)
    _, lenet, fedsgd, _ = _observed(FEDSGD, [3])
    assert "first layer" in why_not(lenet, fedsgd)


def test_a_pruned_upload_is_completed_then_unmixed():
    """Top-k at 50% of a planted mixing of four images: the kept entries determine the rank-4 layer, CPA unmixes it."""
    config, victim, obs, _ = _observed(MLP_BATCH, [3, 4, 5, 6])
    images = _blobs(4) + 0.05  # no exact zeros: the dropped entries are small, not nothing
    planted = _planted(victim, obs, images)
    kept = {name: kept_by_magnitude(value, 0.0, 0.5) for name, value in planted.update.items()}
    pruned = dataclasses.replace(planted, defense="topk", update={
        name: torch.where(kept[name], value, torch.zeros_like(value)) for name, value in planted.update.items()},
        positions={name: torch.nonzero(mask.flatten()).flatten() for name, mask in kept.items()})
    layer = input_layer(victim)
    weight = planted.update[f"{layer}.weight"]
    completed = complete(weight, kept[f"{layer}.weight"], 4, KeptRange.of(weight, kept[f"{layer}.weight"], "topk"),
                         COMPLETION_SWEEPS)
    assert float((completed - weight).norm() / weight.norm()) < 1e-3
    settings = AttackSettings.from_config(config.attack, seed=0).for_method("cpa", iterations=3000, lr=0.03)
    [unmixed] = INVERSIONS["cpa"].run(victim, [pruned], settings)
    assert min(_best_errors(unmixed.images, images)) < 0.01  # as from the dense update
    assert "completed at rank 4" in unmixed.notes[0]
