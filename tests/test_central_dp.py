"""Flower's own DP: the central-DP wrappers with their RdpAccountant, and the accounted local ``dp`` defense.

Central DP's noise is added by the server after it has seen every update: the attacker must get the update as
it arrived (unclipped with server-side clipping), and the epsilon is Flower's accountant's, round by round.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

from fl_sim import privacy
from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError, FederationError
from fl_sim.results import read_events
from strategies.catalog import accountant

from conftest import TINY
from local_grid import run_locally
from spy import Spy

#: A clipping norm far below the tiny run's update norms, so that clipped and unclipped updates differ plainly.
TINY_NORM = 1e-3


def _central(tmp_path, **overrides) -> RunConfig:
    return RunConfig.from_flat({**TINY, "output.dir": str(tmp_path), "defense.per-client": "",
                                "central-dp.clipping-norm": TINY_NORM, **overrides})


def _norm(update) -> float:
    return float(np.sqrt(sum(np.sum(np.square(v.astype(np.float64))) for v in update.delta().values())))


def test_the_epsilon_per_round_is_flowers_accountant_and_the_attacker_sees_the_update_unclipped(tmp_path):
    config = _central(tmp_path, **{"central-dp.clipping": "server-fixed"})
    spy = Spy()
    rounds = [e for e in read_events(run_locally(config, spy)) if e["event"] == "round"]
    expected = accountant(config)
    for event in rounds[1:]:
        expected.compose(GaussianPrivacyEvent(noise_multiplier=1.0, sample_size=3, population_size=3))
        assert event["epsilon"] == pytest.approx(expected.get_privacy_spent().epsilon, rel=1e-12)
        assert event["delta"] == 1e-5
    assert [round(e["epsilon"], 2) for e in rounds] == [0.0, 4.73, 7.08]
    assert min(_norm(update) for update in spy.updates) > 10 * TINY_NORM  # the server clips after the plugins


def test_without_the_accountant_no_epsilon_is_claimed(tmp_path):
    config = _central(tmp_path, **{"central-dp.clipping": "server-fixed", "central-dp.accountant": False})
    rounds = [e for e in read_events(run_locally(config)) if e["event"] == "round"]
    assert len(rounds) == 3 and all(e["epsilon"] is None and e["delta"] is None for e in rounds)


def test_client_side_clipping_clips_before_upload(tmp_path):
    spy = Spy()
    run_locally(_central(tmp_path, **{"central-dp.clipping": "client-fixed"}), spy)
    assert max(_norm(update) for update in spy.updates) <= TINY_NORM * (1 + 1e-4)


def test_a_release_past_max_epsilon_is_not_made_and_the_run_says_so(tmp_path):
    config = _central(tmp_path, **{"central-dp.clipping": "server-fixed", "central-dp.max-epsilon": 6.0})
    with pytest.raises(FederationError, match="round 2 not started: The next private release would exceed"):
        run_locally(config)


def test_the_local_dp_defense_is_accounted_per_client_with_flowers_accountant(tmp_path):
    config = RunConfig.from_flat({**TINY, "output.dir": str(tmp_path), "defense.name": "dp",
                                  "defense.per-client": "", "defense.dp-noise-multiplier": 1.5})
    ledger = [e for e in read_events(run_locally(config)) if e["event"] == "privacy"]
    assert sorted((e["round"], e["partition_id"]) for e in ledger) == [(r, p) for r in (1, 2) for p in range(3)]
    for event in ledger:
        assert event["steps"] == event["round"] and event["noise_multiplier"] == 1.5
        assert event["epsilon"] == pytest.approx(privacy.local_dp_epsilon(config, event["round"]), rel=1e-12)
    assert privacy.local_dp_epsilon(config, 2) > privacy.local_dp_epsilon(config, 1)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"central-dp.clipping": "server-fixed", "secagg.enabled": True}, "legacy path"),
    ({"central-dp.clipping": "server-adaptive", "central-dp.noise-multiplier": 0.1}, "fixed clipping only"),
    ({"central-dp.clipping": "server-adaptive", "central-dp.accountant": False}, "below 0.3"),
    ({"central-dp.clipping": "server-fixed", "strategy.name": "fedadam"}, "needs FedAvg's aggregation"),
    ({"central-dp.clipping": "server-fixed", "train.local-steps": 0}, "equal client weights"),
    ({"central-dp.clipping": "server-fixed", "central-dp.noise-multiplier": 0}, "needs noise"),
    ({"central-dp.clipping": "client-fixed", "defense.per-client": "dgp:1"}, "uploads them sparse"),
])
def test_what_flowers_dp_cannot_do_is_a_one_line_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat({**TINY, "defense.per-client": "", **overrides})
