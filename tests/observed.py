"""Updates made offline as the server observes them, with the victim model they were computed against."""

from __future__ import annotations

import torch

from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

#: What a client of the main job does, on fewer, smaller neurons: 4 SGD steps on batches of 4.
LOCAL_SGD = {"model.name": "mlp", "model.width": 256, "model.init": "default", "train.optimizer": "sgd",
             "train.lr": 0.1, "train.batch-size": 4, "train.local-steps": 4, "defense.per-client": ""}
#: Two epochs of 5 batches of 2 digits (28x28) through the FEMNIST CNN of Dimitrov et al. and SME, at SME's lr.
LOCAL_CNN = {"model.name": "femnist-cnn", "model.init": "default", "data.dataset": "digits", "data.image-size": 28,
             "train.optimizer": "sgd", "train.lr": 0.004, "train.batch-size": 2, "train.local-steps": 0,
             "train.local-epochs": 2, "attack.budget-seconds": 0.0, "defense.per-client": "", "attack.max-images": 64}


def observed(flat: dict, samples: list[list[int]]) -> tuple[RunConfig, Victim, list[Observation]]:
    """The run config of ``flat``, the victim model, and one observed update per client's ``samples``."""
    config = RunConfig.from_flat(flat)
    updates, _ = intercepted_updates(config, samples)
    dataset = load_dataset(config.data)
    observations = [Observation.under(u, config.defense) for u in updates]
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    return config, victim, observations
