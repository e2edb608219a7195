"""The attacked model as a pure function of its parameters, for ``torch.func`` transforms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from fl_sim.config import RunConfig
from fl_sim.models import build_run_model


@dataclass
class Victim:
    """The global model the server sent, with its parameters held as plain tensors.

    The server knows the architecture (it built it) and the weights (it sent them); that is
    all an honest-but-curious server needs to replay a client's gradient computation.
    """

    model: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    input_shape: tuple[int, int, int]
    num_classes: int
    device: torch.device

    @classmethod
    def from_arrays(cls, config: RunConfig, input_shape: tuple[int, int, int], num_classes: int,
                    arrays: Mapping[str, torch.Tensor], device: torch.device) -> Victim:
        """Build the run's architecture (PRECODE included) and load the global ``arrays`` on ``device``."""
        model = build_run_model(config, input_shape, num_classes).to(device)
        model.load_state_dict({k: v.to(device) for k, v in arrays.items()})
        model.train()  # the mode the client trained in
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}
        return cls(model, params, buffers, input_shape, num_classes, device)

    @property
    def param_names(self) -> list[str]:
        """Names of the trainable parameters, in the model's order."""
        return list(self.params)

    def logits(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The model's output for images ``x`` with parameters ``params``."""
        return functional_call(self.model, ({**params}, self.buffers), (x,))

    def loss(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The client's training loss: mean cross-entropy plus the model's penalty (PRECODE's KL).

        ``target`` is class indices ``[B]`` or class probabilities ``[B, C]``.
        """
        logits = self.logits(params, x)
        if target.dtype == torch.long:
            loss = F.cross_entropy(logits, target)
        else:
            loss = -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        return loss + self.model.penalty()

    def gradient(self, x: torch.Tensor, target: torch.Tensor,
                 params: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The parameter gradient a client would compute on ``(x, target)``; differentiable in ``x``."""
        return grad(self.loss)(dict(params or self.params), x, target)
