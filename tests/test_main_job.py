"""The main job: neuron isolation, where each attack applies, the race, per-client defenses, a verdict per update."""

from __future__ import annotations

import pytest
import torch

from attacker.across_rounds import RecoveredSamples
from attacker.attacks import INVERSIONS, AttackSettings
from attacker.attacks.dlg import RACE_EVERY
from attacker.judge import Race
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.errors import ConfigError
from fl_sim.results import read_events

from judging import judge_for
from local_grid import run_locally
from observed import LOCAL_SGD, observed


def test_isolation_reads_images_back_exactly_from_several_steps_of_batches():
    held = list(range(40, 56))
    config, victim, [obs] = observed(LOCAL_SGD, [held])
    [rec] = INVERSIONS["isolation"].run(victim, [obs], AttackSettings.from_config(config.attack, seed=0))
    assert 1 <= len(rec.images) <= obs.most_images == 16  # never more guesses than images the update can hold
    verdict = judge_for(config.data)(rec.images, rec.labels, held)
    exact = [image for image in verdict.images if image.scores.ssim > 0.999]
    assert len(exact) >= 2 and all(image.identified for image in exact)


def test_each_attack_says_where_it_does_not_apply():
    _, mlp, [sgd] = observed(LOCAL_SGD, [[3, 4, 5, 6]])
    assert INVERSIONS["isolation"].why_not(mlp, sgd) is None and INVERSIONS["ig"].why_not(mlp, sgd) is None
    assert "4 images" in INVERSIONS["analytic"].why_not(mlp, sgd)  # 4 steps over 4 images: a mixture
    assert "one plain SGD step" in INVERSIONS["idlg"].why_not(mlp, sgd)
    _, _, [adam] = observed({**LOCAL_SGD, "train.optimizer": "adam", "train.lr": 0.001}, [[3, 4, 5, 6]])
    reasons = INVERSIONS["auto"].reasons(mlp, adam)  # local Adam: only Dimitrov et al.'s simulation models it
    assert [name for name, reason in reasons.items() if reason is None] == ["fedavg"]
    assert "adam" in INVERSIONS["isolation"].why_not(mlp, adam) and "adam" in INVERSIONS["ig"].why_not(mlp, adam)
    _, lenet, [one] = observed(FEDSGD, [[3]])
    assert "first layer" in INVERSIONS["isolation"].why_not(lenet, one)
    assert INVERSIONS["auto"].reasons(lenet, one) == {"isolation": INVERSIONS["isolation"].why_not(lenet, one),
                                                   "pruned-isolation": "the upload is dense: isolation reads each "
                                                                       "of its rows as it is",
                                                   "across-rounds": "the upload is dense: nothing of it is delayed "
                                                                    "to a later round",
                                                   "analytic": None, "idlg": None, "ig": None,
                                                   "feature-isolation": INVERSIONS["feature-isolation"].why_not(
                                                       lenet, one),
                                                   "sme": INVERSIONS["sme"].why_not(lenet, one),
                                                   "fedavg": INVERSIONS["fedavg"].why_not(lenet, one),
                                                   "cpa": INVERSIONS["isolation"].why_not(lenet, one)}


@pytest.mark.parametrize("settles", [True, False])
def test_auto_stops_attacking_an_update_at_its_first_leaked_image(settles):
    config, victim, observations = observed({**FEDSGD, "model.name": "mlp", "model.width": 64,
                                              "model.init": "default", "attack.iterations": 5}, [[3], [9]])
    settings = AttackSettings.from_config(config.attack, seed=0)
    race = Race(judge_for(config.data), [[3], [9]]) if settles else None
    results = INVERSIONS["auto"].run(victim, observations, settings, settled=race)
    for rec in results:
        ran = [c.attack for c in rec.candidates]
        if settles:  # one SGD step on one image of an MLP: isolation reads it back, nothing else runs
            assert ran == ["isolation"] and rec.notes[-1].startswith("leaked after isolation: the rest of the")
        else:
            assert ran == ["isolation", "analytic", "ig tv=0.01", "ig tv=0.001", "ig tv=0.1", "idlg"]


def test_idlg_in_the_race_stops_an_update_once_its_best_point_leaks():
    config, victim, observations = observed(FEDSGD, [[3], [9]])
    settings = AttackSettings.from_config(config.attack, seed=0).for_method("idlg", iterations=40)
    asked = []

    def leaked(index: int, images: torch.Tensor, labels: torch.Tensor) -> bool:
        asked.append(index)
        return index == 0  # the first update's best point leaks; the second's never does

    first, second = INVERSIONS["idlg"].run(victim, observations, settings, leaked=leaked)
    assert first.iterations == RACE_EVERY and asked.count(0) == 1
    assert second.iterations > RACE_EVERY and asked.count(1) == second.iterations // RACE_EVERY


def test_the_main_job_judges_every_update_with_its_clients_defense(tiny_config):
    defaults = RunConfig()
    assert defaults.attack.enabled and defaults.train.optimizer == "sgd" and defaults.model.name == "mlp"
    config = tiny_config.with_overrides({"model.width": 128, "attack.enabled": True, "attack.blocking": True,
                                         "defense.per-client": "dgp:1;topk:2"})
    events = read_events(run_locally(config))
    trained = sorted((e["round"], e["partition_id"]) for e in events if e["event"] == "client-train")
    attacks = [e for e in events if e["event"] == "attack"]
    assert sorted((e["round"], e["partition_id"]) for e in attacks) == trained
    assert {e["partition_id"]: e["defense"] for e in attacks} == {0: "none", 1: "dgp", 2: "topk"}
    assert all("isolation" in e["applied"] for e in attacks)
    for e in attacks:  # 16 images an update: IG applies too, and nothing is "not leaked" while it was cut
        cut = [run["attack"] for run in e["runs"] if not run["complete"]]
        assert e["verdict"] == "leaked" or e["verdict"] == ("undecided" if cut else "not leaked")
    assert any(e["verdict"] == "leaked" for e in attacks if e["defense"] == "none")
    for e in attacks:  # the samples that leaked, by their place in the data set; isolation's own count beside
        assert len(e["leaked_samples"]) == sum(image["leaked"] for image in e["per_image"])
        assert 0 <= e["recurring"] <= e["images"]  # two rounds: what round 2 reads again is all that is confirmed
        assert e["client_confirmed"] <= e["recurring"] and (e["round"] == 2 or e["recurring"] == 0)
    assert not [e for e in events if e["event"] in ("attack-cut", "attack-error", "attack-timeout")]
    assert events[-1]["status"] == "completed"


def test_samples_recovered_again_in_a_later_round_are_counted_once_and_confirmed():
    bank, images = RecoveredSamples(), torch.rand((3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert bank.add(7, images[:2]) == 0 and bank.confirmed(7) == 0
    again = torch.stack([images[1] + 1e-5, images[2]])  # the same sample (float rounding), and a new one
    assert bank.add(7, again) == 1 and bank.confirmed(7) == 1
    assert bank.add(7, images) == 3 and bank.confirmed(7) == 3  # every one now seen in two rounds or more
    assert bank.add(8, images) == 0 and bank.confirmed(8) == 0  # each client's samples apart


def test_updates_no_attack_applies_to_say_so_and_are_never_called_not_leaked(tiny_config):
    config = tiny_config.with_overrides({"model.width": 64, "attack.enabled": True, "attack.blocking": True,
                                         "train.optimizer": "adam", "train.batch-size": 64,
                                         "train.lr": 0.001, "defense.per-client": ""})
    events = read_events(run_locally(config))
    attacks = [e for e in events if e["event"] == "attack"]
    assert len(attacks) == 6 and all(e["verdict"] == "no attack applies" and not e["applied"] for e in attacks)
    assert all("adam" in e["not_applied"]["ig"] and "128 images" in e["not_applied"]["fedavg"] for e in attacks)
    summaries = [e for e in events if e["event"] == "attack-round"]
    assert [s["verdicts"]["no attack applies"] for s in summaries] == [3, 3]


@pytest.mark.parametrize("value, message", [
    ("foo:1", "names defense 'foo'; allowed: none, noise, dp, topk, dgp"),
    ("dgp:1;topk:1", "assigns partition 1 twice"),
    ("dpsgd:1", "names defense 'dpsgd'"),
])
def test_a_bad_per_client_assignment_is_refused_in_one_line(value, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat({"defense.per-client": value})
