"""PRECODE: a variational bottleneck that extends any model of the zoo (Scheliga et al., WACV 2022).

Following the official code (dAI-SY-Group/PRECODE, ``src/VariationalBottleneck.py``): the
input is flattened, one ``Linear(d, 2K)`` encoder gives ``mu`` (first K outputs) and
``sigma = softplus(rest)`` (sigma itself, not a log-variance), ``z = mu + eps * sigma`` with
fresh ``eps ~ N(0, I)``, and one ``Linear(K, d)`` decoder maps back to the input's shape; no
activations. The training loss gains ``beta * KL(N(mu, sigma) || N(0, I))``, the KL summed
over the K dimensions, averaged over the batch and divided by ln 2 (bits). Defaults K = 256,
beta = 1e-3 (the paper).

Sampling at evaluation: the official module samples on every forward pass, in eval mode too
(``eval_sampling="sample"``, our default, faithful); ``"mean"`` uses ``z = mu`` in eval mode,
a deterministic variant for evaluation only (training always samples).

Attacks that model the sampling (the noise-restoring attack) set ``noise`` on the module: while
it is not ``None`` it replaces the fresh draw of ``eps``. Training never sets it.

Placement: ``head`` puts the bottleneck right before the final classifier, as the paper;
``early`` puts it after the first block (first activation of the feature extractor), as the
follow-up CVB work recommends; that placement is beyond the original paper, and uses the same
fully connected bottleneck on the flattened activations, not CVB's convolutional one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fl_sim.errors import ConfigError
from fl_sim.models.base import FeatureClassifier, classifier_head

#: sigma is clamped here before its log, as sigma from softplus can underflow to 0.
SIGMA_FLOOR = 1e-8


def kl_to_standard_normal_bits(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) in bits: summed over dimensions, averaged over the batch."""
    per_sample = 0.5 * (mu.pow(2) + sigma.pow(2) - 2 * sigma.clamp(min=SIGMA_FLOOR).log() - 1).sum(dim=1)
    return per_sample.mean() / math.log(2)


class VariationalBottleneck(nn.Module):
    """PRECODE's module; after each forward pass ``penalty()`` is ``beta`` times that pass's KL (bits)."""

    def __init__(self, in_features: int, k: int = 256, beta: float = 1e-3, eval_sampling: str = "sample") -> None:
        super().__init__()
        self.k = k
        self.beta = beta
        self.eval_sampling = eval_sampling
        self.encoder = nn.Linear(in_features, 2 * k)
        self.decoder = nn.Linear(k, in_features)
        self._kl: torch.Tensor | None = None
        #: ``eps`` to use instead of a fresh draw (set by attacks that optimise the noise), or None.
        self.noise: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode, sample ``z``, decode back to ``x``'s shape."""
        stats = self.encoder(x.flatten(1))
        mu, sigma = stats[:, : self.k], F.softplus(stats[:, self.k:])
        sample = self.training or self.eval_sampling == "sample"
        eps = self.noise if self.noise is not None else torch.randn_like(sigma)
        z = mu + eps * sigma if sample else mu
        self._kl = kl_to_standard_normal_bits(mu, sigma)
        return self.decoder(z).view(x.shape)

    def penalty(self) -> torch.Tensor:
        """``beta * KL`` of the last forward pass (0 before any)."""
        return self.beta * self._kl if self._kl is not None else torch.zeros(())


def extend_with_precode(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int, k: int, beta: float,
                        position: str = "head", eval_sampling: str = "sample") -> nn.Module:
    """Insert a :class:`VariationalBottleneck` into ``model`` (before its classifier, or after its first block).

    A model of the zoo has its classifier by name; a user's model gets the bottleneck before its classifier head,
    the last ``nn.Linear`` with ``num_classes`` outputs (a one-line ConfigError where it has none).
    """
    if not isinstance(model, FeatureClassifier):
        name = classifier_head(model, num_classes)
        if name is None:
            raise ConfigError(f"precode.enabled=true needs a classifier head to put the bottleneck before: a last "
                              f"nn.Linear with {num_classes} outputs, which this model does not have; add one, or "
                              f"set precode.enabled=false")
        head = model.get_submodule(name)
        bottleneck = VariationalBottleneck(head.in_features, k, beta, eval_sampling)
        model.set_submodule(name, nn.Sequential(bottleneck, head))
        return model
    if position == "head":
        bottleneck = VariationalBottleneck(model.feature_dim, k, beta, eval_sampling)
        return FeatureClassifier(nn.Sequential(model.features, bottleneck), model.classifier, model.feature_dim)
    layers = list(model.features) if isinstance(model.features, nn.Sequential) else []
    first_activation = next((i for i, layer in enumerate(layers) if isinstance(layer, (nn.Sigmoid, nn.ReLU))), None)
    if first_activation is None or any(list(layer.children()) for layer in layers[:first_activation]):
        raise ConfigError("config key 'precode.position' early needs a flat feature extractor with an activation "
                          "(lenet, mlp, resnet18); use precode.position=head for this model")
    head = nn.Sequential(*layers[: first_activation + 1])
    with torch.no_grad():
        width = head(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    bottleneck = VariationalBottleneck(width, k, beta, eval_sampling)
    features = nn.Sequential(*head, bottleneck, *layers[first_activation + 1:])
    return FeatureClassifier(features, model.classifier, model.feature_dim)

