"""Every ``strategy.name``, wrapped by the interception.

All replies reach the plugins, and the new global model is what that strategy's rule makes of them (computed here from
the intercepted updates).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fl_sim.config import RunConfig

from local_grid import run_locally
from spy import Spy

CLIENTS = 5
ADAM = dict(eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3)


def _weighted_mean(updates, weights):
    return sum(w * u for w, u in zip(weights, updates)) / sum(weights)


def _krum(updates, malicious=0):
    """Blanchard et al.'s Krum: the update with the least summed squared distance to its n - f - 2 nearest."""
    flat = [u.ravel() for u in updates]
    scores = []
    for i, x in enumerate(flat):
        distances = sorted(float(((x - y) ** 2).sum()) for j, y in enumerate(flat) if j != i)
        scores.append(sum(distances[:len(flat) - malicious - 2]))
    return updates[int(np.argmin(scores))]


def _fedopt(global_, mean, second_moment, step_scale):
    """One first-round FedOpt step from Flower's rules: m = (1 - b1) delta, v as given, x + scale m / (sqrt v + tau)."""
    delta = mean - global_
    return global_ + step_scale(delta) / (np.sqrt(second_moment(delta)) + ADAM["tau"])


#: strategy name -> (extra config, expected new global weights from (global, client weights, their sample counts))
RULES = {
    "fedavg": ({}, lambda g, c, w: _weighted_mean(c, w)),
    "fedprox": ({"train.proximal-mu": 0.5}, lambda g, c, w: _weighted_mean(c, w)),
    "fedavgm": ({"strategy.server-learning-rate": 0.5},
                lambda g, c, w: g + 0.5 * (_weighted_mean(c, w) - g)),
    "fedmedian": ({}, lambda g, c, w: np.median(np.stack(c), axis=0)),
    "fedtrimmedavg": ({}, lambda g, c, w: np.sort(np.stack(c), axis=0)[1:-1].mean(axis=0)),  # 20% of 5 cut per side
    "krum": ({}, lambda g, c, w: _krum(c)),
    "multikrum": ({}, lambda g, c, w: _krum(c)),
    "bulyan": ({}, lambda g, c, w: np.stack(c).mean(axis=0)),  # f = 0: every update selected, none trimmed
    "fedadam": ({"strategy.eta": ADAM["eta"]}, lambda g, c, w: _fedopt(
        g, _weighted_mean(c, w), lambda d: (1 - ADAM["beta_2"]) * d ** 2,
        lambda d: ADAM["eta"] * np.sqrt(1 - ADAM["beta_2"] ** 2) / (1 - ADAM["beta_1"] ** 2)
        * (1 - ADAM["beta_1"]) * d)),
    "fedyogi": ({"strategy.eta": ADAM["eta"]}, lambda g, c, w: _fedopt(
        g, _weighted_mean(c, w), lambda d: (1 - ADAM["beta_2"]) * d ** 2,
        lambda d: ADAM["eta"] * (1 - ADAM["beta_1"]) * d)),
    "fedadagrad": ({"strategy.eta": ADAM["eta"]}, lambda g, c, w: _fedopt(
        g, _weighted_mean(c, w), lambda d: d ** 2, lambda d: ADAM["eta"] * d)),
}


def test_every_offered_strategy_has_a_rule_here():
    from fl_sim.config import STRATEGIES

    assert sorted(RULES) == sorted(STRATEGIES)


@pytest.mark.parametrize("name", sorted(RULES))
def test_the_wrapped_strategy_sees_every_update_and_aggregates_by_its_rule(tmp_path, name):
    extra, rule = RULES[name]
    config = RunConfig.from_flat({
        "num-server-rounds": 1, "data.image-size": 16, "simulation.num-clients": CLIENTS,
        "server.min-train-nodes": CLIENTS, "train.local-steps": 2, "train.batch-size": 8, "output.report": False,
        "attack.deep-budget-seconds": 0, "output.dir": str(tmp_path), "strategy.name": name, **extra})
    spy = Spy()
    run_dir = run_locally(config, spy)
    assert sorted(spy.seen) == [(1, p) for p in range(CLIENTS)]
    if name == "fedprox":
        assert all(update.train_config["proximal-mu"] == 0.5 for update in spy.updates)  # what the clients were sent
    keys = list(torch.load(run_dir / "model.pt"))
    # the rules see each model as one vector (Krum's distances are between whole models)
    final = _flat(torch.load(run_dir / "model.pt"), keys)
    clients = [_flat(update.client_arrays, keys) for update in spy.updates]
    expected = rule(_flat(spy.updates[0].global_arrays, keys), clients, [u.num_examples for u in spy.updates])
    np.testing.assert_allclose(final, expected, rtol=1e-4, atol=1e-6, err_msg=name)


def _flat(arrays, keys) -> np.ndarray:
    return np.concatenate([np.asarray(arrays[key], dtype=np.float64).ravel() for key in keys])
