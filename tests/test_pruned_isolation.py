"""Isolation through pruning: what the pruning's bounds and the rows of one image give back of a pruned upload."""

from __future__ import annotations

import pytest

from attacker.attacks import INVERSIONS, AttackSettings
from fl_sim.config.presets import FEDSGD

from judging import judge_for
from observed import LOCAL_SGD, observed

#: DGP dropping the largest 5% and the smallest 45% of every layer.
LIGHT_DGP = {"defense.name": "dgp", "defense.dgp-top-ratio": 0.05, "defense.dgp-bottom-ratio": 0.45}


def _attacked(flat: dict, samples: list[list[int]], method: str):
    config, victim, observations = observed(flat, samples)
    settings = AttackSettings.from_config(config.attack, seed=0).for_method(method)
    results = INVERSIONS[method].run(victim, observations, settings)
    return config, victim, observations, [judge_for(config.data)(r.images, r.labels, held)
                                          for r, held in zip(results, samples)], results


def test_it_applies_to_pruned_uploads_of_a_fully_connected_first_layer_only():
    attack = INVERSIONS["pruned-isolation"]
    _, victim, [dense], _, _ = _attacked({**LOCAL_SGD, "defense.name": "none"}, [[3, 4]], "isolation")
    assert attack.why_not(victim, dense) == "the upload is dense: isolation reads each of its rows as it is"
    _, victim, [pruned], _, _ = _attacked({**LOCAL_SGD, "defense.name": "topk"}, [[3, 4]], "isolation")
    assert attack.why_not(victim, pruned) is None
    _, victim, [adam], _, _ = _attacked({**LOCAL_SGD, **LIGHT_DGP, "train.optimizer": "adam", "train.lr": 0.001},
                                        [[3, 4]], "isolation")
    assert "adam" in attack.why_not(victim, adam)


def test_one_image_under_dgp_is_read_back_from_its_rows_each_pruned_differently():
    """FedSGD on one image: every row is that image at its own scale, each pruned differently by DGP.

    DGP's default drops the largest 10% and the smallest 80% of each layer; isolation, which takes what is missing
    as 0, misses the image.
    """
    flat = {**FEDSGD, "model.name": "mlp", "model.width": 256, "model.init": "default", "defense.name": "dgp"}
    *_, [plain], _ = _attacked(flat, [[7]], "isolation")
    *_, [bounded], [rec] = _attacked(flat, [[7]], "pruned-isolation")
    assert not plain.leaked and plain.best_ssim < 0.2
    assert bounded.leaked and bounded.best_ssim > 0.9
    assert "1 shown by several rows" in rec.notes[0]


@pytest.mark.parametrize("pruning", [
    {"defense.name": "dgp", "defense.dgp-bottom-ratio": 0.89},  # 99% pruned: a few entries per row
    {"defense.name": "topk", "defense.topk-prune-ratio": 0.5},  # fewer entries moved than kept: zeros travel too
])
def test_one_image_is_completed_from_every_row_that_moved(pruning):
    """One image: every row that moved is that image's, however few entries it kept (too few to compare two rows).

    The rows tied through the pixels they share complete the image; rows of neurons that did not fire are no part
    of it, though the layer may keep their zeros.
    """
    flat = {**FEDSGD, "model.name": "mlp", "model.width": 256, "model.init": "default", **pruning}
    *_, [verdict], _ = _attacked(flat, [[7]], "pruned-isolation")
    assert verdict.leaked and verdict.best_ssim > 0.8, verdict.best_ssim


def test_the_gaps_top_k_leaves_at_99_percent_are_filled_from_their_neighbours_towards_the_background():
    """The main job's MLP (1024 units, 32x32 digits) in FedSGD, top-k keeping 1% of each layer.

    Only the brightest pixels clear the threshold; the digit's edges are gaps bounded by it. Zeros there cut the
    edges off (best SSIM 0.50, not leaked); the screened fill grows them back from the pixels known around them.
    """
    flat = {**FEDSGD, "model.name": "mlp", "model.init": "default", "model.depth": 1,
            "defense.name": "topk", "defense.topk-prune-ratio": 0.99}
    *_, [verdict], _ = _attacked(flat, [[7]], "pruned-isolation")
    assert verdict.leaked and verdict.best_ssim > 0.8, verdict.best_ssim


@pytest.mark.parametrize("top, bound", [(0.05, "smaller than the smallest kept or larger than the largest"),
                                        (0.0, "no larger than the smallest kept")])
def test_the_server_bounds_what_did_not_travel_by_the_protocol_s_top_ratio(top, bound):
    """Whether an entry that did not travel may lie above those kept is the protocol's DGP top ratio.

    With none, DGP drops only the smallest entries, as top-k does, and the bound is one-sided.
    """
    flat = {**LOCAL_SGD, "defense.name": "dgp", "defense.dgp-top-ratio": top, "defense.dgp-bottom-ratio": 0.5}
    _, _, [obs], _, [rec] = _attacked(flat, [[3, 4]], "pruned-isolation")
    assert obs.drops_largest == (top > 0)
    assert bound in rec.notes[0]


def test_it_finds_images_of_several_steps_that_isolation_misses_under_dgp():
    samples = [list(range(40 + 16 * k, 56 + 16 * k)) for k in range(3)]
    *_, plain, _ = _attacked({**LOCAL_SGD, **LIGHT_DGP}, samples, "isolation")
    *_, bounded, _ = _attacked({**LOCAL_SGD, **LIGHT_DGP}, samples, "pruned-isolation")
    assert sum(v.images_leaked for v in bounded) > sum(v.images_leaked for v in plain)
