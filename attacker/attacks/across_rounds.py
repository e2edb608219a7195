"""Across rounds: what error feedback delays, read from a client's uploads summed over its rounds.

A pruning defense with error feedback (DGP, Xue et al., AAAI 2024) keeps what it drops and adds it to the client's
next update: its upload in round ``t`` is ``keep(update_t + residual_{t-1})``. So nothing is lost to the server, only
delayed: a client's uploads up to round ``t`` sum to its updates up to ``t`` less the residual it holds after ``t``,
and that sum has travelled on every coordinate any of its rounds carried. The server sees every upload of a client
(:class:`attacker.across_rounds.UploadSums` sums them, every round, attacked or not). A client trains on the same
local data every round, so the summed first-layer update is still ``A^T X`` over its images: the rows of a neuron
that isolates one image round after round add up to that image, kept on more of its pixels than any one round keeps.

The sum is read as one pruned upload of this round by isolation through pruning
(:mod:`attacker.attacks.pruned_isolation`), its gaps bounded by the magnitudes the sum kept (a heuristic here: an
entry no round carried is bounded by the thresholds of the rounds that dropped it, which the sum does not keep
apart). Images are judged against the client's images of this round, as every attack's.
"""

from __future__ import annotations

from attacker.attacks import pruned_isolation
from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES


def why_not(victim: Victim, obs: Observation) -> str | None:
    """Why reading the client's summed uploads does not apply to ``obs`` (``None`` when it does)."""
    if obs.upload_sum is None:
        if not obs.pruned:
            return "the upload is dense: nothing of it is delayed to a later round"
        return ("no earlier upload of this client to add: its defense feeds back nothing it pruned, or this is its "
                "first round")
    return pruned_isolation.why_not(victim, obs.upload_sum)


def run_across_rounds(victim: Victim, observations: list[Observation], settings: AttackSettings,
                      stop: Stop | None = None) -> list[Reconstruction]:
    """Isolation through pruning on each client's summed uploads; each result is that of the update of this round."""
    results = pruned_isolation.run_pruned_isolation(victim, [obs.upload_sum for obs in observations], settings, stop)
    for obs, rec in zip(observations, results):
        rec.observation, rec.attack, rec.method = obs, ACROSS_ROUNDS.name, ACROSS_ROUNDS.name
        rec.notes = [f"the client's uploads up to round {obs.server_round} summed: {rec.notes[0]}", *rec.notes[1:]]
    return results


ACROSS_ROUNDS = InversionAttack(ATTACK_ENTRIES["across-rounds"], run=run_across_rounds, why_not=why_not)
