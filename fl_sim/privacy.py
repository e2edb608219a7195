"""The privacy accounting of the clients' own DP, shared by the clients and the server.

``dp`` (DP-FedAvg's client step: the update clipped to ``dp-clip``, Gaussian noise of std
``dp-noise-multiplier x dp-clip``) is one Gaussian release per round the client trains in; Flower's
RdpAccountant composes them (client-level add-or-remove neighbours, sensitivity the clip, no sampling
amplification: the client knows it takes part) into the epsilon at ``defense.dp-delta`` (:func:`local_dp_epsilon`).

A client running ``defense.name=dpsgd`` clips every per-sample gradient to
``defense.dpsgd-max-grad-norm`` and adds Gaussian noise of std ``sigma x max-grad-norm`` to each
batch's sum (Abadi et al., 2016). Its privacy loss after ``T`` steps at sample rate
``q = batch / local samples`` is what Opacus's RDP accountant says for ``(sigma, q, T)``. Both sides
compute it from what they know: the client from its data, the server from the protocol it sent and
what each client reported (samples, steps), so the server logs the epsilon every client has spent
without trusting a number the client sends. As in Opacus, the accountant assumes Poisson sampling;
the clients draw shuffled fixed-size batches, the usual approximation of the field.

With ``dpsgd-target-epsilon`` set, ``sigma`` is the smallest one (Opacus's ``get_noise_multiplier``)
that keeps a client within that epsilon after every round of the run, each round taking the local
steps the protocol asks for.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

from torch import nn

from fl_sim.config import RunConfig
from fl_sim.training import DpSgd, batch_schedule

if TYPE_CHECKING:
    from flwr.serverapp import RdpAccountant

# Opacus is imported where it is used: it adds seconds to the start of every process (the CLI, each
# client actor) and only a run with defense.name=dpsgd needs it.


def steps_per_round(config: RunConfig, num_examples: int) -> int:
    """The optimizer steps one round of local training takes on ``num_examples`` samples."""
    return len(batch_schedule(num_examples, config.train, seed=0))


def sample_rate(config: RunConfig, num_examples: int) -> float:
    """The share of a client's samples in one batch (``q``)."""
    return min(config.train.batch_size, num_examples) / num_examples


@functools.lru_cache(maxsize=1024)
def noise_multiplier(config: RunConfig, num_examples: int) -> float:
    """``sigma`` of a client holding ``num_examples`` samples.

    The configured one, or the one its target epsilon needs over the whole run.
    """
    defense = config.defense
    if not defense.dpsgd_target_epsilon:
        return defense.dpsgd_noise_multiplier
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return get_noise_multiplier(target_epsilon=defense.dpsgd_target_epsilon, target_delta=defense.dpsgd_delta,
                                    sample_rate=sample_rate(config, num_examples),
                                    steps=config.num_server_rounds * steps_per_round(config, num_examples),
                                    accountant="rdp")


def dp_sgd(config: RunConfig, num_examples: int) -> DpSgd | None:
    """The DP-SGD settings of a client holding ``num_examples`` samples, or None when the run does not use it."""
    if not config.defense.entry().in_local_training:
        return None
    return DpSgd(noise_multiplier(config, num_examples), config.defense.dpsgd_max_grad_norm)


def spent_epsilon(config: RunConfig, num_examples: int, steps: int) -> float:
    """The epsilon (at ``defense.dpsgd-delta``) a client has spent after ``steps`` DP-SGD steps in all."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier(config, num_examples), sample_rate(config, num_examples), steps)]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is valid, only loose
        warnings.simplefilter("ignore", UserWarning)
        return accountant.get_epsilon(config.defense.dpsgd_delta)


def flower_accountant(target_delta: float, population_size: int, max_epsilon: float | None = None) -> RdpAccountant:
    """Flower's RdpAccountant for client-level DP: add-or-remove-one neighbours, no sampling amplification.

    Central DP (every round's noisy mean a release over ``population_size`` clients) and ``dp`` (every noisy upload
    a release of one client) are both accounted this way.
    """
    from flwr.serverapp import RdpAccountant
    from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod

    return RdpAccountant(PrivacyConfig(target_delta=target_delta, population_size=population_size,
                                       neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                       sampling_method=SamplingMethod.NO_AMPLIFICATION, max_epsilon=max_epsilon))


def local_dp_epsilon(config: RunConfig, releases: int) -> float:
    """The epsilon (at ``defense.dp-delta``) a ``dp`` client has spent after ``releases`` noisy uploads."""
    from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

    accountant = flower_accountant(config.defense.dp_delta, population_size=1)
    accountant.compose(GaussianPrivacyEvent(config.defense.dp_noise_multiplier, sample_size=1, population_size=1),
                       count=releases)
    return accountant.get_privacy_spent().epsilon


def unsupported_layers(model: nn.Module) -> list[str]:
    """Why Opacus cannot compute ``model``'s per-sample gradients: the first sentence of each distinct reason."""
    from opacus.validators import ModuleValidator

    return list(dict.fromkeys(str(error).split(". ")[0] for error in ModuleValidator.validate(model, strict=False)))
