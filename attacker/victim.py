"""The attacked model as a pure function of its parameters, for ``torch.func`` transforms."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch._C._functorch import is_functorch_wrapped_tensor
from torch.func import functional_call, grad

from fl_sim.models import Architecture, VariationalBottleneck, training_penalty
from fl_sim.models.base import classifier_head


class _Captured(Exception):
    """Carries a layer's input out of a forward pass that need not go further."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value


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
    #: optimisation steps built on this model (:class:`attacker.steps.Step`), by the attack's shape:
    #: kept while the victim serves later rounds, so that a compiled step is compiled once per run
    steps: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_arrays(cls, architecture: Architecture, arrays: Mapping[str, torch.Tensor],
                    device: torch.device) -> Victim:
        """Build the run's ``architecture`` (PRECODE included) and load the global ``arrays`` on ``device``."""
        model = architecture.build().to(device)
        model.load_state_dict({k: v.to(device) for k, v in arrays.items()})
        model.train()  # the mode the client trained in
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}
        return cls(model, params, buffers, architecture.input_shape, architecture.num_classes, device)

    @classmethod
    def for_round(cls, previous: Victim | None, architecture: Architecture, arrays: Mapping[str, torch.Tensor],
                  device: torch.device) -> Victim:
        """The model a round's clients started from: ``previous`` with ``arrays`` loaded, or a new one for the first.

        One victim serves a whole run, its weights replaced per round, so that the optimisation steps built on it
        (compiled ones above all) are built once.
        """
        if previous is None:
            return cls.from_arrays(architecture, arrays, device)
        previous.load(arrays)
        return previous

    def load(self, arrays: Mapping[str, torch.Tensor]) -> None:
        """Take a later round's global ``arrays`` in place: same tensors, new values (the steps stay valid)."""
        self.model.load_state_dict(arrays)  # copies into the existing tensors, which params and buffers alias

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
        return loss + training_penalty(self.model)

    def gradient(self, x: torch.Tensor, target: torch.Tensor,
                 params: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The parameter gradient a client would compute on ``(x, target)``; differentiable in ``x``.

        Inside ``torch.func`` transforms (the vmap-batched attacks) and ``torch.compile`` it is
        ``torch.func.grad``; elsewhere plain autograd, which costs half as much per call.
        """
        params = dict(params or self.params)
        inputs = (x, target, *params.values())
        if torch.compiler.is_compiling() or any(is_functorch_wrapped_tensor(t) for t in inputs):
            return grad(self.loss)(params, x, target)
        differentiable = any(t.requires_grad for t in inputs)
        leaves = {n: p if p.requires_grad else p.detach().requires_grad_(True) for n, p in params.items()}
        with torch.enable_grad():
            gradients = torch.autograd.grad(self.loss(leaves, x, target), list(leaves.values()),
                                            create_graph=differentiable)
        return dict(zip(leaves, gradients))

    def predictions(self, images: torch.Tensor) -> torch.Tensor:
        """The global model's labels for ``images`` (on the CPU): an exact attack's guess at the labels it read back."""
        with torch.no_grad():
            return self.model(images.to(self.device)).argmax(dim=1).cpu()

    @property
    def head(self) -> str:
        """The classifier head's module name (``classifier`` for the zoo), whose update label recovery reads.

        A model without one (no last ``nn.Linear`` with ``num_classes`` outputs) raises: its labels cannot be read.
        """
        name = classifier_head(self.model, self.num_classes)
        if name is None:
            raise ValueError(f"the model has no classifier head (a last nn.Linear with {self.num_classes} outputs): "
                             f"labels cannot be recovered from its update")
        return name

    @property
    def bottleneck(self) -> VariationalBottleneck | None:
        """PRECODE's bottleneck module, if the model has one."""
        return next((m for m in self.model.modules() if isinstance(m, VariationalBottleneck)), None)

    def stochastic_param_names(self) -> list[str]:
        """Parameters whose gradient depends on the bottleneck's sampled noise.

        The bottleneck's own and every later layer's (what the omit-gradient attack leaves out); empty without PRECODE.
        """
        bottleneck = self.bottleneck
        if bottleneck is None:
            return []
        first = next(name for name, p in self.model.named_parameters() if p is bottleneck.encoder.weight)
        names = self.param_names
        return names[names.index(first):]

    @contextmanager
    def fixed_noise(self, eps: torch.Tensor) -> Iterator[None]:
        """Within the block, the bottleneck uses ``eps`` ``[B, K]`` instead of drawing its noise."""
        bottleneck = self.bottleneck
        bottleneck.noise = eps
        try:
            yield
        finally:
            bottleneck.noise = None

    def input_of(self, module_name: str, x: torch.Tensor,
                 params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """What the module ``module_name`` receives when the model runs on ``x`` (the pass stops there).

        With the sent weights, or with ``params`` (e.g. a client's after its local training).
        """
        module = self.model.get_submodule(module_name)

        def capture(_module, inputs):
            raise _Captured(inputs[0])
        handle = module.register_forward_pre_hook(capture)
        try:
            self.logits(params or self.params, x)
        except _Captured as captured:
            return captured.value
        finally:
            handle.remove()
        raise RuntimeError(f"the forward pass never reached {module_name!r}")
