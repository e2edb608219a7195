"""DP-SGD (defense.name=dpsgd): Opacus in local training, the server's privacy ledger, and what is refused."""

from __future__ import annotations

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture
from fl_sim.reporting.progress import RunProgress
from fl_sim.results import load_events, read_events
from lab.simulation import check_private_model

from local_grid import run_locally

DPSGD = {"num-server-rounds": 2, "data.image-size": 16, "simulation.num-clients": 3, "train.local-steps": 3,
         "train.batch-size": 8, "output.report": False, "attack.enabled": False, "defense.name": "dpsgd",
         "defense.dpsgd-max-grad-norm": 1.0}


def _opacus_epsilon(sigma: float, sample_rate: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()
    for _ in range(steps):  # Opacus's own bookkeeping: one step() per optimizer step
        accountant.step(noise_multiplier=sigma, sample_rate=sample_rate)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("privacy", [{"defense.dpsgd-noise-multiplier": 1.1}, {"defense.dpsgd-target-epsilon": 8.0}],
                         ids=["noise-multiplier", "target-epsilon"])
def test_the_epsilon_the_run_reports_is_opacus_accountant_for_the_same_settings(tmp_path, privacy):
    run_dir = run_locally(RunConfig.from_flat({**DPSGD, **privacy, "output.dir": str(tmp_path)}))
    events = read_events(run_dir)
    ledger = [e for e in events if e["event"] == "privacy"]
    assert sorted((e["round"], e["partition_id"]) for e in ledger) == [(r, p) for r in (1, 2) for p in range(3)]
    samples = {e["partition_id"]: e["num_examples"] for e in events if e["event"] == "client-train"}
    for event in ledger:
        rate = 8 / samples[event["partition_id"]]
        sigma = privacy.get("defense.dpsgd-noise-multiplier") or get_noise_multiplier(
            target_epsilon=8.0, target_delta=1e-5, sample_rate=rate, steps=2 * 3, accountant="rdp")
        assert event["steps"] == 3 * event["round"] and event["sample_rate"] == pytest.approx(rate)
        assert event["noise_multiplier"] == pytest.approx(sigma)
        assert event["epsilon"] == pytest.approx(_opacus_epsilon(sigma, rate, event["steps"], 1e-5), rel=1e-9)
    if "defense.dpsgd-target-epsilon" in privacy:
        assert max(e["epsilon"] for e in ledger) <= 8.0  # the budget holds at the end of the run
    epsilon, delta = RunProgress.from_events(load_events(run_dir)).privacy_spent()
    assert (epsilon, delta) == (max(e["epsilon"] for e in ledger), 1e-5)


def test_more_noise_spends_less_epsilon(tmp_path):
    runs = {sigma: read_events(run_locally(RunConfig.from_flat({
        **DPSGD, "defense.dpsgd-noise-multiplier": sigma, "output.dir": str(tmp_path / str(sigma))})))
        for sigma in (0.8, 3.0)}
    spent = {sigma: max(e["epsilon"] for e in events if e["event"] == "privacy") for sigma, events in runs.items()}
    assert spent[3.0] < spent[0.8]


def test_a_model_opacus_cannot_handle_is_refused_in_one_line_before_the_run():
    with pytest.raises(ConfigError, match=r"^defense.name=dpsgd cannot train model.name=resnet18 with "
                                          r"model.norm=batch: BatchNorm cannot support training with differential "
                                          r"privacy; choose model.norm=group or another model$"):
        config = RunConfig.from_flat({"defense.name": "dpsgd", "model.name": "resnet18", "model.norm": "batch"})
        dataset = load_dataset(config.data)
        check_private_model(config, Architecture.of(config, dataset.input_shape, dataset.num_classes).build())


def test_dpsgd_and_fedprox_are_refused_together():
    with pytest.raises(ConfigError, match="cannot be combined with defense.name=dpsgd"):
        RunConfig.from_flat({"defense.name": "dpsgd", "strategy.name": "fedprox", "train.proximal-mu": 0.1})


def test_dp_sgd_clips_every_per_sample_gradient_and_adds_seeded_noise():
    """Plain SGD, lr 0.1, 3 steps.

    With per-sample gradients clipped to C and no noise, each step moves the weights by at most lr x C (the batch mean
    of vectors of norm <= C); with noise, seeds repeat it exactly.
    """
    import torch

    from fl_sim.data import load_client_data, load_dataset
    from fl_sim.models import Architecture
    from fl_sim.training import DpSgd, train_local

    config = RunConfig.from_flat({**DPSGD, "train.optimizer": "sgd", "train.lr": 0.1})
    dataset = load_dataset(config.data)
    data = load_client_data(config.data, 0, 3, config.seed)

    def update(dp: DpSgd, seed: int = 0) -> torch.Tensor:
        model = Architecture.of(config, dataset.input_shape, dataset.num_classes).build(seed=0)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train_local(model, data.train, config.train, seed=seed, dp=dp)
        return torch.cat([p.detach().flatten() for p in model.parameters()]) - before

    clipped = update(DpSgd(noise_multiplier=0.0, max_grad_norm=1e-3))
    assert 0 < clipped.norm() <= 3 * 0.1 * 1e-3 * (1 + 1e-5)
    noisy = update(DpSgd(noise_multiplier=1.0, max_grad_norm=1e-3))
    assert noisy.norm() > 10 * clipped.norm()
    assert torch.equal(noisy, update(DpSgd(noise_multiplier=1.0, max_grad_norm=1e-3)))
