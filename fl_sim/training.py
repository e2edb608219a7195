"""Local training and evaluation: what a client does with its data, and how the server scores a model."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fl_sim.config import TrainConfig
from fl_sim.data import ImageData
from fl_sim.models.base import training_penalty

# Opacus's per-sample hooks on a first layer whose input needs no gradient: expected, and harmless
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with respect "
                                          "to module outputs")


@dataclass(frozen=True)
class TrainResult:
    """What one round of local training did.

    ``num_examples`` is the size of the local training data (FedAvg's weight, n_k in McMahan et
    al.). ``sample_indices`` lists, in order, the positions in the client's local training data of
    the samples it used; a simulator can map them to the data set to judge reconstructions.
    """

    loss: float
    accuracy: float
    num_examples: int
    steps: int
    seconds: float
    sample_indices: np.ndarray


@dataclass(frozen=True)
class DpSgd:
    """DP-SGD's settings for one client's training (Abadi et al., 2016, through Opacus)."""

    noise_multiplier: float
    max_grad_norm: float


@dataclass(frozen=True)
class EvalResult:
    """Mean loss and accuracy of a model on some data."""

    loss: float
    accuracy: float
    num_examples: int


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names, with the configured lr, momentum and weight decay."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def batch_schedule(num_samples: int, config: TrainConfig, seed: int) -> list[np.ndarray]:
    """The mini-batches (index arrays) one round of local training visits, in order.

    With ``local-steps`` > 0 exactly that many batches are drawn, reshuffling at each epoch
    boundary; otherwise ``local-epochs`` full passes. Deterministic under ``seed``.
    """
    rng = np.random.default_rng(seed)
    batch = min(config.batch_size, num_samples)
    batches: list[np.ndarray] = []
    epochs = 0
    while True:
        order = rng.permutation(num_samples)
        for start in range(0, num_samples, batch):
            batches.append(order[start:start + batch])
            if config.local_steps and len(batches) == config.local_steps:
                return batches
        epochs += 1
        if not config.local_steps and epochs == config.local_epochs:
            return batches


def train_local(model: nn.Module, data: ImageData, config: TrainConfig, seed: int,
                device: torch.device | str = "cpu", dp: DpSgd | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` for one round; return loss, accuracy and what it saw.

    The loss of each batch is the mean cross-entropy, plus the model's penalty (PRECODE's KL), plus
    FedProx's proximal term ``mu/2 ||w - w_global||^2`` when ``proximal-mu`` is set. With ``dp``
    every step is DP-SGD's: Opacus computes per-sample gradients, clips each to ``max_grad_norm``
    and adds seeded Gaussian noise of std ``noise_multiplier x max_grad_norm`` to their sum.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    criterion = nn.CrossEntropyLoss()
    images, labels = data.tensors()
    schedule = batch_schedule(len(labels), config, seed)
    forward, optimizer = _private(model, optimizer, dp, len(schedule[0]), seed, device) if dp else (model, optimizer)
    anchor = [p.detach().clone() for p in model.parameters()] if config.proximal_mu else []
    total_loss, correct, seen = 0.0, 0, 0
    for indices in schedule:
        x, y = images[indices].to(device), labels[indices].to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = forward(x)
        loss = criterion(logits, y) + training_penalty(model)
        if anchor:  # FedProx: stay near the global model the round started from
            loss = loss + config.proximal_mu / 2 * sum((p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor))
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    if dp:
        forward._close()  # Opacus's hooks and per-sample gradients leave the model
    return TrainResult(loss=total_loss / seen, accuracy=correct / seen, num_examples=len(labels),
                       steps=len(schedule), seconds=time.perf_counter() - start,
                       sample_indices=np.concatenate(schedule))


def _private(model: nn.Module, optimizer: torch.optim.Optimizer, dp: DpSgd, batch_size: int, seed: int,
             device: torch.device | str) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model wrapped to compute per-sample gradients, and the optimizer made DP-SGD's, as Opacus does it."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    noise = torch.Generator(device=device).manual_seed(seed)
    return GradSampleModule(model), DPOptimizer(optimizer, noise_multiplier=dp.noise_multiplier,
                                                max_grad_norm=dp.max_grad_norm, expected_batch_size=batch_size,
                                                generator=noise)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, batch_size: int = 512,
             device: torch.device | str = "cpu") -> EvalResult:
    """Cross-entropy loss and accuracy of ``model`` on ``data`` (eval mode, no gradients)."""
    model.to(device).eval()
    images, labels = data.tensors()
    if len(labels) == 0:
        return EvalResult(loss=float("nan"), accuracy=float("nan"), num_examples=0)
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        x, y = images[start:start + batch_size].to(device), labels[start:start + batch_size].to(device)
        logits = model(x)
        total_loss += criterion(logits, y).item()
        correct += (logits.argmax(1) == y).sum().item()
    return EvalResult(loss=total_loss / len(labels), accuracy=correct / len(labels), num_examples=len(labels))

