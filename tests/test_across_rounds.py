"""Across rounds: a DGP client's uploads summed over its rounds hold what its error feedback delayed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacker.across_rounds import UploadSums
from attacker.attacks import INVERSIONS, AttackSettings
from attacker.undecided import UndecidedStore
from fl_sim.config import RunConfig

from judging import judge_for
from observed import LOCAL_SGD, observed

#: DGP dropping the smallest half of every layer and nothing of the largest.
HALF_DGP = {**LOCAL_SGD, "defense.name": "dgp", "defense.dgp-top-ratio": 0.0, "defense.dgp-bottom-ratio": 0.5}
SAMPLES = [list(range(40, 56))]
#: The protocol's defense settings, with DGP's error feedback (its default) and without.
FEEDS_BACK = RunConfig.from_flat(HALF_DGP).defense
NO_FEEDBACK = RunConfig.from_flat({**HALF_DGP, "defense.error-feedback": False}).defense


def _in_rounds(obs, rounds: int):
    """``obs``'s upload as ``rounds`` uploads of one client, each carrying a random share of what travelled.

    What error feedback does to an entry the layer's threshold holds back: it travels in a later round.
    """
    generator = torch.Generator().manual_seed(0)
    travelled = obs.travelled(list(obs.update))
    share = {k: torch.randint(rounds, m.shape, generator=generator) for k, m in travelled.items()}
    for r in range(rounds):
        own = {k: travelled[k] & (share[k] == r) for k in travelled}
        yield dataclasses.replace(obs, server_round=r + 1, update={k: v * own[k] for k, v in obs.update.items()},
                                  positions={k: torch.nonzero(m.flatten()).flatten() for k, m in own.items()})


def test_a_client_s_uploads_summed_give_back_what_each_round_left_out():
    config, victim, [whole] = observed(HALF_DGP, SAMPLES)
    sums = UploadSums()
    for piece in _in_rounds(whole, 4):
        last = sums.with_sum(piece, FEEDS_BACK)
    settings = AttackSettings.from_config(config.attack, seed=0)
    judge = judge_for(config.data)

    def leaked(method: str) -> int:
        [rec] = INVERSIONS[method].run(victim, [last], settings.for_method(method))
        assert rec.observation is last
        return judge(rec.images, rec.labels, SAMPLES[0]).images_leaked
    assert torch.equal(last.upload_sum.update["features.1.weight"], whole.update["features.1.weight"])
    assert leaked("pruned-isolation") == 0  # a quarter of what travelled: too few pixels per row
    assert leaked("across-rounds") >= 4


def test_only_a_client_s_own_pruned_uploads_under_error_feedback_are_summed():
    _, victim, [pruned] = observed(HALF_DGP, SAMPLES)
    _, _, [dense] = observed({**LOCAL_SGD, "defense.name": "none"}, SAMPLES)
    sums, attack = UploadSums(), INVERSIONS["across-rounds"]
    assert sums.with_sum(pruned, NO_FEEDBACK).upload_sum is None
    assert sums.with_sum(dense, FEEDS_BACK).upload_sum is None
    assert "dense" in attack.why_not(victim, dense)
    first = sums.with_sum(pruned, FEEDS_BACK)
    assert first.upload_sum is None and "first round" in attack.why_not(victim, first)
    second = sums.with_sum(dataclasses.replace(pruned, server_round=2), FEEDS_BACK)
    assert attack.why_not(victim, second) is None
    assert torch.equal(second.upload_sum.update["features.1.bias"], 2 * pruned.update["features.1.bias"])


@pytest.mark.parametrize("flat, feeds_back", [({"defense.name": "dgp"}, True),
                                              ({"defense.name": "dgp", "defense.error-feedback": False}, False),
                                              ({"defense.name": "topk"}, False)])
def test_the_protocol_says_which_defense_feeds_back_what_it_pruned(flat, feeds_back):
    assert RunConfig.from_flat({**flat, "defense.per-client": ""}).defense.feeds_back() is feeds_back


def test_an_undecided_update_is_kept_with_its_client_s_summed_uploads(tmp_path):
    _, _, [pruned] = observed(HALF_DGP, SAMPLES)
    sums = UploadSums()
    sums.with_sum(pruned, FEEDS_BACK)
    second = sums.with_sum(dataclasses.replace(pruned, server_round=2), FEEDS_BACK)
    store = UndecidedStore(tmp_path)
    store.keep(second, {})
    [kept] = store.kept()
    back = kept.observation.upload_sum
    assert back is not None and back.drops_largest is False
    for name, values in second.upload_sum.update.items():
        assert torch.equal(back.update[name], values)
        assert torch.equal(back.positions[name], second.upload_sum.positions[name])
