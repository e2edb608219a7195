"""The attacks' L-BFGS takes torch's steps."""

from __future__ import annotations

import pytest
import torch

from attacker.lbfgs import LBFGS


def _objective(x: torch.Tensor) -> torch.Tensor:
    """A smooth, strongly convex function of 40 variables, on which L-BFGS without a line search is stable."""
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(40, 40, dtype=torch.float64, generator=generator)
    b = torch.randn(40, dtype=torch.float64, generator=generator)
    q = m @ m.T / 40 + 0.5 * torch.eye(40, dtype=torch.float64)
    return 0.5 * x @ q @ x - b @ x + 0.05 * torch.log(torch.cosh(x)).sum()


@pytest.mark.parametrize("history_size", [3, 100])
def test_lbfgs_takes_the_steps_of_torchs_lbfgs(history_size):
    trajectories = []
    for optimizer_class in (torch.optim.LBFGS, LBFGS):
        x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
        optimizer = optimizer_class([x], lr=0.5, max_iter=4, history_size=history_size)

        def closure(x=x):
            value = _objective(x)
            x.grad = torch.autograd.grad(value, x)[0]
            return value.detach()
        trajectories.append([(float(optimizer.step(closure)), x.detach().clone()) for _ in range(8)])
    for (loss_torch, x_torch), (loss_ours, x_ours) in zip(*trajectories):
        assert loss_ours == pytest.approx(loss_torch, rel=1e-12)
        assert torch.allclose(x_ours, x_torch, rtol=0, atol=1e-12)
    assert trajectories[1][-1][0] < trajectories[1][0][0]
