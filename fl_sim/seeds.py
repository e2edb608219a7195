"""The run's random streams: every use of the run seed is named here once, with what it draws.

A stream's seed is derived from the run seed, the round and, for a client's streams, the
client's partition (Flower's node ids are drawn anew by every run, partitions are not), then
the stream's own suffix, so that a rerun with the same seed draws the same numbers in every
process, whatever the order in which rounds, clients and attacks happen to run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stream:
    """A named random stream: what it draws and the numbers appended to tell it apart."""

    name: str
    suffix: tuple[int, ...] = ()

    def seed(self, run_seed: int, server_round: int, partition: int | None = None, *extra: int) -> int:
        """This stream's seed for ``server_round``.

        A client's stream also takes its ``partition``, an attack's start its restart as ``extra``.
        """
        parts = [run_seed, server_round, *([] if partition is None else [partition]), *self.suffix, *extra]
        return derive_seed(*parts)


#: A client's local training (batch order, dropout, DP-SGD's noise): ``(seed, round, partition)``.
TRAINING = Stream("training")
#: Which clients the strategy samples in a round (Flower's sampler uses ``random``): ``(seed, round, 0)``.
CLIENT_SAMPLING = Stream("client-sampling", (0,))
#: Which clients the attacker attacks when ``attack.max-clients`` caps them: ``(seed, round, 1)``.
ATTACK_SAMPLING = Stream("attack-sampling", (1,))
#: A client's update defense (``noise``, ``dp``): ``(seed, round, partition, 2)``.
DEFENSE_NOISE = Stream("defense-noise", (2,))
#: The attacker's random starts for a client's update: ``(seed, round, partition, restart...)``. It shares
#: its layout with TRAINING (no restart) and DEFENSE_NOISE (restart 2), kept so that measured figures
#: stay reproducible; the three feed independent generators of different kinds (batch order, upload
#: noise, dummy images), which the server and the client never share.
ATTACK_START = Stream("attack-start")


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from several integers, stable across processes (numpy's ``SeedSequence``)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)
