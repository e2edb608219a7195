"""Update defenses: exact pruning per layer, error feedback conserving mass, bytes, wiring through the client."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clients.client_app import create_client_app
from clients.defenses import defend, defend_weights, kept_by_magnitude
from clients.mods import RESIDUAL
from fl_sim import sparse
from fl_sim.config import DefenseConfig, RunConfig
from fl_sim.errors import ConfigError
from fl_sim.results import read_events

from local_grid import LocalGrid, run_locally
from spy import Spy


def _update(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(12, 3, 5, 5, generator=g), "fc.bias": torch.randn(10, generator=g)}


def test_dual_pruning_drops_exact_shares_per_layer():
    values = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    survivors = kept_by_magnitude(values, drop_top=0.1, drop_bottom=0.8)
    assert int(survivors.sum()) == 100
    magnitude = values.abs()
    assert magnitude[survivors].max() <= magnitude.sort().values[899]  # the top 100 are gone
    assert magnitude[survivors].min() >= magnitude.sort().values[800]  # the bottom 800 are gone
    result = defend({"w": values}, DefenseConfig(name="dgp", dgp_top_ratio=0.1, dgp_bottom_ratio=0.8,
                                                 error_feedback=False), None, torch.Generator())
    assert torch.equal(result.kept["w"], survivors) and torch.equal(result.update["w"][survivors], values[survivors])


def test_dgp_per_layer_counts_and_error_feedback_conserve_the_mass():
    config = DefenseConfig(name="dgp", dgp_top_ratio=0.2, dgp_bottom_ratio=0.5)
    rounds = [_update(seed) for seed in range(3)]
    residual, uploaded = None, {k: torch.zeros_like(v) for k, v in rounds[0].items()}
    for update in rounds:
        result = defend(update, config, residual, torch.Generator())
        for name, value in result.update.items():
            assert int((value != 0).sum()) == value.numel() - round(0.2 * value.numel()) - round(0.5 * value.numel())
            uploaded[name] += value
        residual = result.residual
    for name in uploaded:  # everything computed was either uploaded or is still held back
        assert torch.allclose(uploaded[name] + residual[name], sum(r[name] for r in rounds), atol=1e-5)


def test_bytes_dense_vs_sparse():
    update = _update()
    entries = sum(v.numel() for v in update.values())
    plain = defend(update, DefenseConfig(name="none"), None, torch.Generator())
    assert plain.upload_bytes == plain.dense_bytes == 4 * entries
    pruned = defend(update, DefenseConfig(name="topk", topk_prune_ratio=0.9), None, torch.Generator())
    kept = sum(int((v != 0).sum()) for v in pruned.update.values())
    assert pruned.upload_bytes == 8 * kept and kept == 90 + 1  # 900 -> 90, 10 -> 1
    assert pruned.upload_bytes < plain.dense_bytes / 4 and pruned.sparse and not plain.sparse
    half = defend(update, DefenseConfig(name="topk", topk_prune_ratio=0.5), None, torch.Generator())
    kept_half = sum(int(mask.sum()) for mask in half.kept.values())
    assert half.sparse and half.upload_bytes == 8 * kept_half  # positions travel, even where dense costs as much


def test_dp_clips_then_adds_noise_and_noise_adds_noise():
    update = {"w": torch.full((10000,), 0.1)}  # norm 10
    clipped = defend(update, DefenseConfig(name="dp", dp_clip=1.0, dp_noise_multiplier=0.0), None, torch.Generator())
    assert torch.linalg.norm(clipped.update["w"]).item() == pytest.approx(1.0, rel=1e-5)
    noisy = defend(update, DefenseConfig(name="dp", dp_clip=1.0, dp_noise_multiplier=0.5), None, torch.Generator())
    assert (noisy.update["w"] - clipped.update["w"]).std().item() == pytest.approx(0.5, rel=0.05)
    plain_noise = defend(update, DefenseConfig(name="noise", noise_std=0.01), None, torch.Generator())
    assert (plain_noise.update["w"] - update["w"]).std().item() == pytest.approx(0.01, rel=0.05)


def test_defend_weights_adds_the_defended_update_to_the_global_weights():
    global_state = {"w": torch.zeros(100), "steps": torch.tensor(3)}
    local_state = {"w": torch.arange(100.0), "steps": torch.tensor(4)}
    upload, result = defend_weights(global_state, local_state, DefenseConfig(name="noise", noise_std=1.0),
                                    None, torch.Generator().manual_seed(0))
    assert torch.equal(upload["w"], global_state["w"] + result.update["w"]) and not result.sparse
    assert upload["steps"].item() == 4 and set(result.update) == {"w"}


def test_a_kept_entry_that_is_exactly_zero_travels_and_the_attacker_matches_it():
    """Top-k keeps the larger half of six zeros and four ones.

    One kept entry is exactly zero. Its position travels, and the attacker's mask of what travelled comes from the
    positions, not from the values.
    """
    from types import MappingProxyType

    from attacker.observation import Observation
    from fl_sim.plugins import InterceptedUpdate

    global_state = {"w": torch.zeros(10)}
    local_state = {"w": torch.tensor([0.0] * 6 + [1.0] * 4)}
    upload, result = defend_weights(global_state, local_state, DefenseConfig(name="topk", topk_prune_ratio=0.5),
                                    None, torch.Generator())
    assert result.kept["w"].tolist() == [False] * 5 + [True] * 5 and upload["w@positions"].tolist() == [5, 6, 7, 8, 9]
    globals_ = {"w": global_state["w"].numpy()}
    dense, travelled = sparse.unpack({name: value.numpy() for name, value in upload.items()}, globals_)
    update = InterceptedUpdate(server_round=1, node_id=1, partition_id=0, global_arrays=globals_,
                               client_arrays=dense, metrics={}, train_config=MappingProxyType({}),
                               travelled=travelled)
    observation = Observation.from_update(update, "topk")
    assert observation.update["w"][5] == 0 and observation.travelled(["w"])["w"].tolist() == [False] * 5 + [True] * 5


def test_a_pruned_upload_is_positions_and_values_that_the_server_adds_to_the_global_weights():
    global_state = {"w": torch.randn(200, generator=torch.Generator().manual_seed(0)), "steps": torch.tensor(3)}
    local_state = {"w": global_state["w"] + torch.randn(200, generator=torch.Generator().manual_seed(1)),
                   "steps": torch.tensor(4)}
    config = DefenseConfig(name="topk", topk_prune_ratio=0.9)
    upload, result = defend_weights(global_state, local_state, config, None, torch.Generator())
    assert set(upload) == {"w@positions", "w@values", "steps"} and upload["w@values"].numel() == 20
    arrays = {name: value.numpy() for name, value in upload.items()}
    globals_ = {name: value.numpy() for name, value in global_state.items()}
    dense, travelled = sparse.unpack(arrays, globals_)
    assert np.array_equal(dense["w"], (global_state["w"] + result.update["w"]).numpy()) and dense["steps"] == 4
    assert np.array_equal(travelled["w"], np.flatnonzero(result.kept["w"].numpy()))


@pytest.mark.parametrize("corrupt", [
    lambda a: {**a, "w@positions": a["w@positions"] + 500},  # out of range
    lambda a: {**a, "w@values": a["w@values"][:-1]},  # lengths differ
    lambda a: {**a, "w@values": a["w@values"].astype(np.float64)},  # wrong dtype
    lambda a: {k: v for k, v in a.items() if k != "steps"},  # a dense array missing
    lambda a: {**a, "backdoor@positions": a["w@positions"]},  # an array the model does not have
])
def test_malformed_sparse_uploads_are_not_unpacked(corrupt):
    values = torch.randn(100)
    upload = sparse.pack({"w": values}, {"w": kept_by_magnitude(values, 0.0, 0.9)}, {"steps": torch.tensor(4)})
    arrays = {name: value.numpy() for name, value in upload.items()}
    assert sparse.unpack(arrays, {"w": np.zeros(100, np.float32), "steps": np.array(3)}) is not None
    assert sparse.unpack(corrupt(arrays), {"w": np.zeros(100, np.float32), "steps": np.array(3)}) is None


class _WireGrid(LocalGrid):
    """Records the array names and bytes of every training reply as it leaves the clients."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wire: list[tuple[set[str], int]] = []

    def send_and_receive(self, messages, *, timeout=None):
        replies = super().send_and_receive(messages, timeout=timeout)
        for reply in replies:
            if not reply.has_error() and "arrays" in reply.content.array_records:
                record = reply.content.array_records["arrays"]
                self.wire.append((set(record), sum(array.numpy().nbytes for array in record.values())))
        return replies


@pytest.mark.parametrize("name", ["none", "dgp"])
def test_dgp_updates_travel_sparse_and_plugins_see_dense_weights(tiny_config, name):
    config = tiny_config.with_overrides({"defense.name": name})
    grid, spy = _WireGrid(create_client_app(config), 3), Spy()
    run_locally(config, spy, grid=grid)
    assert len(grid.wire) == 6 and len(spy.updates) == 6
    dense_bytes = sum(value.nbytes for value in spy.updates[0].global_arrays.values())
    for names, nbytes in grid.wire:
        assert any(n.endswith("@positions") for n in names) == (name == "dgp")
        assert (nbytes < dense_bytes / 4) if name == "dgp" else nbytes == dense_bytes
    for update in spy.updates:  # what the plugins get: global + update, with DGP's 10% of entries changed
        assert set(update.client_arrays) == set(update.global_arrays)
        changed = sum(int((update.client_arrays[k] != update.global_arrays[k]).sum()) for k in update.global_arrays)
        total = sum(v.size for v in update.global_arrays.values())
        assert (changed <= 0.11 * total) if name == "dgp" else (changed > 0.5 * total)


def test_dgp_ratios_must_leave_something_to_upload():
    with pytest.raises(ConfigError, match="exceed 1"):
        RunConfig.from_flat({"defense.dgp-top-ratio": 0.5, "defense.dgp-bottom-ratio": 0.6})


@pytest.mark.parametrize("name", ["noise", "dp", "topk", "dgp"])
def test_each_defense_runs_through_the_client(tiny_config, name):
    config = tiny_config.with_overrides({"defense.name": name})
    run_dir = run_locally(config)
    train = [e for e in read_events(run_dir) if e["event"] == "client-train"]
    assert len(train) == 6
    sparse = name in ("topk", "dgp")
    assert all((e["upload_bytes"] < e["dense_bytes"] / 4) == sparse for e in train)
    assert read_events(run_dir)[-1]["status"] == "completed"


def test_dgp_residual_persists_in_the_node_state(tiny_config):
    config = tiny_config.with_overrides({"defense.name": "dgp"})
    grid = LocalGrid(create_client_app(config), config.simulation.num_clients)
    run_locally(config, grid=grid)
    assert len(grid.contexts) == 3
    residuals = [context.state[RESIDUAL].to_torch_state_dict() for context in grid.contexts.values()]
    assert all(sum(v.abs().sum() for v in residual.values()) > 0 for residual in residuals)


#: One SGD step on one image per client, attacked with iDLG inside the round: the papers' setting.
#: iDLG is defense-aware: against a pruned upload it matches only the coordinates that travelled,
#: and that breaks DGP and top-k 90% here; PRECODE's noise and strong Gaussian noise stop it.
TINY_PRIVACY = {"train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1,
                "num-server-rounds": 1, "attack.enabled": True, "attack.method": "idlg",
                "attack.iterations": 60, "attack.blocking": True}


@pytest.mark.parametrize("defense, leaks", [
    ({}, True),
    ({"precode.enabled": True}, False),
    ({"defense.name": "dgp"}, True),
    ({"defense.name": "topk", "defense.topk-prune-ratio": 0.9}, True),
    ({"defense.name": "noise", "defense.noise-std": 0.1}, False),
])
def test_tiny_privacy_check_per_defense(tiny_config, defense, leaks):
    config = tiny_config.with_overrides({**TINY_PRIVACY, **defense})
    run_dir = run_locally(config)
    rounds = [e for e in read_events(run_dir) if e["event"] == "attack-round"]
    assert len(rounds) == 1 and rounds[0]["clients"] == 3
    assert (rounds[0]["client_success_rate"] >= 2 / 3) if leaks else (rounds[0]["client_success_rate"] == 0)


def test_sparse_encoding_round_trips_and_sizes_the_upload():
    values = torch.randn(7, 9, generator=torch.Generator().manual_seed(3))
    mask = kept_by_magnitude(values, 0.2, 0.5)
    positions, kept = sparse.encode(values, mask)
    assert positions.dtype == torch.int32 and kept.dtype == torch.float32
    assert kept.numel() == 63 - round(0.2 * 63) - round(0.5 * 63)
    assert torch.equal(sparse.decode(positions, kept, values.shape), torch.where(mask, values, 0.0))
    result = defend({"w": values}, DefenseConfig(name="dgp", dgp_top_ratio=0.2, dgp_bottom_ratio=0.5), None,
                    torch.Generator())
    assert result.upload_bytes == positions.numel() * 4 + kept.numel() * 4


def test_the_defense_mod_defends_a_users_own_client_app():
    """DGP as a Flower mod in an app that is not ours (Flower's FedAvg sends, a toy handler trains)."""
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp.strategy import FedAvg

    from clients.mods import defense_mod

    from local_grid import LocalGrid

    app = ClientApp(mods=[defense_mod(RunConfig.from_flat({"defense.name": "dgp"}))])

    @app.train()
    def train(msg, context):
        trained = {k: v + torch.linspace(-1, 1, v.numel()).view_as(v) for k, v in
                   msg.content["arrays"].to_torch_state_dict().items()}
        return Message(RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord({"num-examples": 4})}),
                       reply_to=msg)

    sent = {"w": torch.zeros(10, 10), "b": torch.zeros(10)}
    grid = LocalGrid(app, num_nodes=2)
    for server_round in (1, 2):
        messages = FedAvg().configure_train(server_round, ArrayRecord(sent), ConfigRecord(), grid)
        replies = list(grid.send_and_receive(messages))
        assert [reply.has_error() for reply in replies] == [False, False]
        for reply in replies:
            uploaded = reply.content["arrays"]
            assert {"w@positions", "w@values", "b@positions", "b@values"} <= set(uploaded)  # sparse: 10% kept
            assert len(uploaded["w@values"].numpy()) == 10
            metrics = reply.content["metrics"]
            assert metrics["upload-bytes"] < metrics["dense-bytes"] == 110 * 4
    assert all(RESIDUAL in context.state for context in grid.contexts.values())  # error feedback kept


def test_dp_is_flowers_local_dp_mechanism_seeded():
    """``dp`` clips and adds noise as Flower's LocalDpMod does.

    It clips as ``compute_clip_model_update`` does (the whole update's L2 norm) and adds noise of the std
    LocalDpMod would for sensitivity = clip and epsilon = sqrt(2 ln(1.25/delta)) / multiplier; unlike
    LocalDpMod (NumPy's global generator) its noise is seeded, so runs repeat.
    """
    import math

    import numpy as np
    from flwr.supercore.differential_privacy import compute_clip_model_update

    global_state = {"w": torch.zeros(50, 20), "b": torch.zeros(20)}
    local_state = {"w": torch.linspace(-3, 3, 1000).view(50, 20), "b": torch.linspace(0, 2, 20)}
    config = DefenseConfig(name="dp", dp_clip=1.5, dp_noise_multiplier=0.0)
    ours, _ = defend_weights(global_state, local_state, config, None, torch.Generator())
    flower = [local_state[k].numpy().copy() for k in ("w", "b")]
    compute_clip_model_update(flower, [global_state[k].numpy() for k in ("w", "b")], clipping_norm=1.5)
    for key, expected in zip(("w", "b"), flower):
        np.testing.assert_allclose(ours[key].numpy(), expected, rtol=1e-5, atol=1e-7)
    delta, multiplier = 1e-5, 0.8
    epsilon = math.sqrt(2 * math.log(1.25 / delta)) / multiplier
    local_dp_std = 1.5 * math.sqrt(2 * math.log(1.25 / delta)) / epsilon  # LocalDpMod's std, sensitivity = clip
    noisy = DefenseConfig(name="dp", dp_clip=1.5, dp_noise_multiplier=multiplier)
    draws = [defend_weights(global_state, local_state, noisy, None, torch.Generator().manual_seed(7))[0]["w"]
             for _ in range(2)]
    assert torch.equal(*draws)
    assert (draws[0] - ours["w"]).std().item() == pytest.approx(local_dp_std, rel=0.1)


def test_a_registered_pruning_defense_needs_no_other_edit(tiny_config, monkeypatch):
    """One entry and its function (tests/toy_defense.py) are all a pruning defense needs.

    The defense is listed by `fl-sim config`, validates, runs through the client, travels as the positions it
    kept (its kept zeros included) and is attacked defense-aware.
    """
    from fl_sim.config import describe
    from fl_sim.defense_registry import DEFENSES, DefenseEntry

    entry = DefenseEntry("keep-a-zero", "toy_defense:keep_a_zero", prunes=True)
    monkeypatch.setitem(DEFENSES._entries, entry.name, entry)  # registered for this test only
    assert "keep-a-zero" in dict((key, text) for key, _, text in describe())["defense.name"]
    # central DP's client-side clipping refuses it for its flag (it prunes), not for its name
    with pytest.raises(ConfigError, match="but defense topk/dgp/keep-a-zero uploads them sparse"):
        tiny_config.with_overrides({"defense.name": "keep-a-zero", "central-dp.clipping": "client-fixed"})
    config = tiny_config.with_overrides({"defense.name": "keep-a-zero", "num-server-rounds": 1, "attack.enabled": True,
                                         "attack.method": "idlg", "attack.iterations": 5, "attack.blocking": True,
                                         "train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1,
                                         "train.local-steps": 1})
    spy = Spy()
    events = read_events(run_locally(config, spy))
    update = spy.updates[0]
    kept_zeros = sum(int((update.client_arrays[name].ravel()[positions] ==
                          update.global_arrays[name].ravel()[positions]).sum())
                     for name, positions in update.travelled.items())
    assert kept_zeros >= len(update.travelled)  # each layer's zeroed entry travelled
    attacks = [e for e in events if e["event"] == "attack"]
    assert len(attacks) == 3 and all("defense-aware" in " ".join(e["notes"]) for e in attacks)
