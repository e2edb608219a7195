"""The attacker: metrics, label recovery, each attack on tiny settings, batched == sequential, the plugin."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.judge import count_accuracy
from attacker.label_counts import update_label_counts
from attacker.labels import recover_labels
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.devices import resolve_device
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture
from fl_sim.results import read_events
from lab.offline import intercepted_updates

from judging import judge_for
from local_grid import run_locally


def _observe(config: RunConfig, samples: list[list[int]], seed: int = 0):
    """The victim model, the server's observations and each client's data, for clients of ``samples``."""
    updates, truths = intercepted_updates(config, samples, seed=seed)
    observations = [Observation.from_update(update) for update in updates]
    dataset = load_dataset(config.data)
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    return victim, observations, truths


def _settings(config: RunConfig, method: str | None = None, **changes) -> AttackSettings:
    """The run's attack settings for ``method`` (default: the config's), with ``changes``."""
    return AttackSettings.from_config(config.attack, seed=0).for_method(method or config.attack.method, **changes)


def _ssim_psnr(config: RunConfig, reconstruction, held: list[int]):
    """The best SSIM, the first image's PSNR and the verdict of ``reconstruction`` of the images at ``held``."""
    verdict = judge_for(config.data)(reconstruction.images, reconstruction.labels, held)
    return verdict.best_ssim, verdict.images[0].scores.psnr, verdict


def test_labels_recovered_for_one_image_and_for_a_batch():
    config = RunConfig.from_flat(FEDSGD)
    labels = load_dataset(config.data).train.labels.numpy()
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(10)]
    victim, observations, truths = _observe(config, [[i] for i in firsts])
    for obs, truth in zip(observations, truths):
        assert recover_labels(obs.gradient_estimate(victim.param_names), 1, victim).tolist() == truth.labels.tolist()
    batch_config = RunConfig.from_flat({**FEDSGD, "train.batch-size": 4})
    victim, observations, truths = _observe(batch_config, [[firsts[1], firsts[4], firsts[6], firsts[9]]])
    recovered = recover_labels(observations[0].gradient_estimate(victim.param_names), 4, victim)
    assert sorted(recovered.tolist()) == [1, 4, 6, 9]


def test_label_counts_of_two_local_epochs_are_read_off_the_bias_and_not_claimed_for_adam():
    flat = {"model.name": "mlp", "model.init": "default", "model.width": 256, "train.lr": 0.01,
            "train.batch-size": 4, "train.local-steps": 0, "train.local-epochs": 2, "defense.per-client": ""}
    labels = load_dataset(RunConfig.from_flat(flat).data).train.labels.numpy()
    held = [int(i) for c, n in ((2, 4), (5, 3), (7, 1)) for i in np.flatnonzero(labels == c)[:n]]
    victim, [obs], [truth] = _observe(RunConfig.from_flat(flat), [held])
    counts = update_label_counts(victim, obs)
    assert counts.tolist() == [0, 0, 4, 0, 0, 3, 0, 1, 0, 0]
    assert count_accuracy(counts.tolist(), truth.labels.tolist()) == 1.0
    assert count_accuracy([0, 0, 3, 0, 0, 3, 0, 2, 0, 0], truth.labels.tolist()) == 7 / 8  # one image miscounted
    adam = RunConfig.from_flat({**flat, "train.optimizer": "adam", "train.lr": 0.001})
    victim, [obs], _ = _observe(adam, [held])
    assert update_label_counts(victim, obs) is None  # Adam rescales every entry: the bias does not count


def test_analytic_recovers_one_image_exactly_from_an_mlp():
    config = RunConfig.from_flat({**FEDSGD, "model.name": "mlp", "model.width": 128})
    victim, observations, _ = _observe(config, [[5]])
    rec = INVERSIONS["analytic"].run(victim, observations, _settings(config, "analytic"))[0]
    ssim, psnr, verdict = _ssim_psnr(config, rec, [5])
    assert psnr >= 60 and ssim > 0.999 and verdict.label_accuracy == 1.0 and verdict.leaked


@pytest.mark.parametrize("method, iterations, restarts", [("idlg", 60, 2), ("ig", 1000, 1)])
def test_optimisation_attacks_break_an_undefended_lenet(method, iterations, restarts):
    """DLG's LeNet, one image, one SGD step: the setting where every paper reports success.

    L-BFGS diverges from some random starts (here 2 of 8 seeds); keeping the best of two starts,
    which is what ``attack.restarts`` is for, succeeded from every seed tried.
    """
    config = RunConfig.from_flat({**FEDSGD, "attack.method": method})
    victim, observations, _ = _observe(config, [[3]])
    rec = INVERSIONS[method].run(victim, observations, _settings(config, iterations=iterations, restarts=restarts))[0]
    ssim, _, verdict = _ssim_psnr(config, rec, [3])
    start = judge_for(config.data)(torch.randn(1, 1, 32, 32), rec.labels, [3])
    assert ssim >= 0.6 > start.best_ssim
    assert verdict.leaked and not start.leaked and verdict.label_accuracy == 1.0


def test_dlg_lowers_its_cost_from_a_joint_image_and_label_start():
    """DLG optimises image and soft label together.

    60 L-BFGS steps lower its matching cost far below the first step's. L-BFGS can diverge from an unlucky start (it
    does from the first start of image 3 with numpy 2.4 and scikit-learn 1.9: the start is then kept), which is what
    ``attack.restarts`` addresses: the best of two tries is kept.
    """
    config = RunConfig.from_flat({**FEDSGD, "attack.method": "dlg"})
    victim, observations, _ = _observe(config, [[3], [40]])
    first = INVERSIONS["dlg"].run(victim, observations, _settings(config, iterations=1))
    final = INVERSIONS["dlg"].run(victim, observations, _settings(config, iterations=60, restarts=2))
    assert all(b.loss < a.loss / 10 for a, b in zip(first, final))


def test_batched_engine_equals_sequential():
    config = RunConfig.from_flat({**FEDSGD, "attack.method": "ig"})
    victim, observations, _ = _observe(config, [[1], [2], [3]])
    settings = _settings(config, iterations=20, restarts=2)
    batched = INVERSIONS["ig"].run(victim, observations, dataclasses.replace(settings, batched=True))
    sequential = INVERSIONS["ig"].run(victim, observations, dataclasses.replace(settings, batched=False))
    for a, b in zip(batched, sequential):
        assert torch.allclose(a.images, b.images, atol=1e-4)
        assert a.loss == pytest.approx(b.loss, abs=1e-5)


def test_replayed_local_steps_reduce_the_matching_cost():
    config = RunConfig.from_flat({**FEDSGD, "train.local-steps": 3, "attack.method": "ig"})
    victim, observations, truths = _observe(config, [[4, 9, 13]])
    assert observations[0].local_steps == 3 and not observations[0].exact_gradient
    short = INVERSIONS["ig"].run(victim, observations, _settings(config, iterations=1))[0]
    longer = INVERSIONS["ig"].run(victim, observations, _settings(config, iterations=150))[0]
    assert longer.images.shape == (3, 1, 32, 32) and "replay" in longer.attack
    assert longer.loss < short.loss


def test_attacks_see_no_audit():
    fields = {f.name for f in dataclasses.fields(Observation)}
    assert "audit" not in fields and not any("audit" in name for name in fields)


def test_cuda_requested_without_a_gpu_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="attack.device' is cuda but no CUDA GPU is visible"):
        resolve_device("cuda")


def _attacked_run(config: RunConfig, **attack):
    flat = {**FEDSGD, **{f"attack.{k}": v for k, v in attack.items()}, "attack.enabled": True}
    config = config.with_overrides(flat)
    run_dir = run_locally(config)
    return run_dir, read_events(run_dir)


def test_plugin_attacks_every_client_of_every_round(tiny_config):
    run_dir, events = _attacked_run(tiny_config, method="ig", iterations=40, blocking=False)
    attacks = [e for e in events if e["event"] == "attack"]
    assert sorted((e["round"], e["partition_id"]) for e in attacks) == [(r, p) for r in (1, 2) for p in range(3)]
    assert all(e["device"] == str(resolve_device("auto")) and e["iterations"] == 40 for e in attacks)
    assert all(len(e["per_image"]) == 1 and e["held"] == 1 for e in attacks)
    assert all(set(e["per_image"][0]) >= {"ssim", "margin_db", "identified", "label_recovered", "leaked"}
               for e in attacks)
    assert all(e["chance"]["draws"] > 0 and e["chance"]["decoy_update_rate"] <= 0.005 for e in attacks)
    assert all(e["success"] == (e["per_image"][0]["identified"] and e["per_image"][0]["ssim"] >= 0.6)
               for e in attacks)
    assert all((run_dir / e["image"]).is_file() for e in attacks)
    rounds = [e for e in events if e["event"] == "attack-round"]
    assert [e["round"] for e in rounds] == [1, 2] and all(e["clients"] == 3 for e in rounds)
    assert all(e["images_held"] == 3 and e["images_identified"] <= 3 for e in rounds)
    assert events[-1]["event"] == "run-end"  # pending attacks finished before the summary


def test_analytic_on_a_lenet_inverts_its_classifier_inputs(tiny_config):
    _, events = _attacked_run(tiny_config, method="analytic", iterations=50, blocking=True)
    attacks = [e for e in events if e["event"] == "attack"]
    assert len(attacks) == 6 and not [e for e in events if e["event"] == "attack-error"]
    assert all("inputs of 'classifier' recovered analytically" in " ".join(e["notes"]) for e in attacks)


def test_analytic_fails_only_the_client_whose_bias_did_not_move():
    config = RunConfig.from_flat({**FEDSGD, "model.name": "mlp", "model.width": 64})
    victim, observations, _ = _observe(config, [[5], [6]])
    frozen = dataclasses.replace(observations[0], update={
        name: torch.zeros_like(value) if name.endswith("bias") else value
        for name, value in observations[0].update.items()})
    first, second = INVERSIONS["analytic"].run(victim, [frozen, observations[1]], _settings(config, "analytic"))
    assert "nothing recovered" in first.notes[-1] and not _ssim_psnr(config, first, [5])[2].leaked
    assert _ssim_psnr(config, second, [6])[1] >= 60


def test_the_server_takes_the_cores_its_simulated_clients_leave_free(monkeypatch):
    from fl_sim.devices import server_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert server_threads(0, num_clients=10, client_cpus=1.0, clients_here=True) == 6
    assert server_threads(0, num_clients=10, client_cpus=2.0, clients_here=True) == 1  # 8 run at once on 16
    assert server_threads(0, num_clients=40, client_cpus=0.5, clients_here=True) == 1  # at least one
    assert server_threads(0, num_clients=10, client_cpus=1.0, clients_here=False) == 16  # clients elsewhere
    assert server_threads(3, num_clients=10, client_cpus=1.0, clients_here=True) == 3  # attack.threads wins
