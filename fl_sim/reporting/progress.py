"""Where a run stands, folded from its ``events.jsonl``: the one model behind every view of a run.

The live display, ``fl-sim watch``, the report and ``fl-sim compare`` all read a run through
:class:`RunProgress`, so that they agree, and so that a finished run, a running one and one
read from another machine's copy look the same.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fl_sim import events


@dataclass
class AttackRound:
    """One round's attack: its summary (if it finished) or how it ended, and its per-client events."""

    round: int
    summary: events.AttackRound | None = None
    ended_by: str | None = None  # attack-error / attack-timeout / attack-cut
    reason: str | None = None
    clients: list[events.Attack] = field(default_factory=list)

    def take(self, event: events.Attack) -> None:
        """Add an update's verdict; a deep pass's takes the place of the round's verdict of the same update."""
        for index, client in enumerate(self.clients):
            if client.update_key == event.update_key:
                self.clients[index] = event
                return
        self.clients.append(event)

    def verdicts(self) -> dict[str, int]:
        """The round's updates per standing verdict (a deep pass's where one superseded the round's)."""
        counts = {name: 0 for name in events.VERDICTS}
        for client in self.clients:
            name = client.verdict or _legacy_verdict(client)
            counts[name] = counts.get(name, 0) + 1
        return counts


@dataclass
class RunProgress:
    """A run as its events describe it; :meth:`add` takes events one at a time, as they are written."""

    total_rounds: int = 0
    started: float | None = None
    rounds: list[events.Round] = field(default_factory=list)  # round 0 first
    attacks: dict[int, AttackRound] = field(default_factory=dict)
    failures: list[events.ClientFailure | events.UpdateRejected] = field(default_factory=list)
    upload_bytes: dict[int, int] = field(default_factory=dict)  # per round, summed over clients
    clients_this_round: int = 0
    end: events.RunEnd | None = None
    attack_enabled: bool = False
    privacy: dict[int, events.Privacy] = field(default_factory=dict)  # partition -> its latest
    deep_passes: list[events.DeepPass] = field(default_factory=list)

    @classmethod
    def from_events(cls, run_events: Iterable[events.Event], config: Mapping[str, Any] | None = None) -> RunProgress:
        """Fold a whole event list (``config`` is the run's ``config.json``, for the attack settings)."""
        progress = cls(attack_enabled=bool((config or {}).get("attack.enabled", False)))
        for event in run_events:
            progress.add(event)
        return progress

    def add(self, event: events.Event) -> None:
        """Take one event into account."""
        match event:
            case events.RunStart():  # a resumed run too
                self.total_rounds = event.rounds
                self.started = self.started or event.time
                self.end = None
            case events.Round():
                self.rounds = [r for r in self.rounds if r.round < event.round] + [event]
                self.clients_this_round = 0
            case events.ClientTrain():
                self.clients_this_round += 1
                self.upload_bytes[event.round] = self.upload_bytes.get(event.round, 0) + event.upload_bytes
            case events.ClientFailure() | events.UpdateRejected():
                self.failures.append(event)
            case events.Attack():
                self._attack(event.round).take(event)
            case events.DeepPass():
                self.deep_passes.append(event)
            case events.AttackRound():
                self._attack(event.round).summary = event
            case events.AttackError() | events.AttackTimeout():
                attack = self._attack(event.round)
                attack.ended_by, attack.reason = event.KIND, event.error
            case events.AttackCut():
                attack = self._attack(event.round)
                attack.ended_by, attack.reason = event.KIND, event.reason
            case events.Privacy():
                self.privacy[event.partition_id] = event
            case events.RunEnd():
                self.end = event

    def _attack(self, server_round: int) -> AttackRound:
        return self.attacks.setdefault(server_round, AttackRound(server_round))

    @property
    def done(self) -> int:
        """Rounds completed (the initial evaluation, round 0, does not count)."""
        return max((r.round for r in self.rounds), default=0)

    @property
    def last_round(self) -> events.Round | None:
        """The latest ``round`` event (the initial evaluation, round 0, before any other), or None."""
        return self.rounds[-1] if self.rounds else None

    @property
    def finished(self) -> bool:
        """Whether the run has ended (completed, failed or interrupted)."""
        return self.end is not None

    @property
    def status(self) -> str:
        """running, or how the run ended."""
        return self.end.status if self.end else "running"

    def eta_seconds(self) -> float | None:
        """Time left at the median pace of the rounds so far (None before the first round ends)."""
        seconds = [r.seconds for r in self.rounds if r.round > 0]
        if self.finished or not seconds:
            return None
        return statistics.median(seconds) * max(self.total_rounds - self.done, 0)

    def pending_attacks(self) -> int:
        """Completed rounds whose attack has not reported yet (queued or running in the background)."""
        if not self.attack_enabled or self.finished:
            return 0
        return sum(1 for r in self.rounds if r.round > 0 and r.round not in self.attacks)

    def attack_rows(self) -> list[AttackRound]:
        """Every round's attack, in round order."""
        return [self.attacks[r] for r in sorted(self.attacks)]

    def verdicts(self) -> dict[str, int]:
        """The run's attacked updates per standing verdict (final where a deep pass gave one)."""
        counts = {name: 0 for name in events.VERDICTS}
        for attack in self.attacks.values():
            for name, count in attack.verdicts().items():
                counts[name] = counts.get(name, 0) + count
        return counts

    def provisional(self) -> int:
        """Updates still undecided whose update is kept for a deep pass (``fl-sim audit``)."""
        return sum(bool(c.provisional) and c.verdict == events.UNDECIDED
                   for a in self.attacks.values() for c in a.clients)

    def attack_success_rate(self) -> float | None:
        """Share of judged attacked clients whose data leaked, over the whole run."""
        judged = [c.success for a in self.attacks.values() for c in a.clients if c.success is not None]
        return sum(judged) / len(judged) if judged else None

    def image_scores(self) -> list[events.ImageScore]:
        """Every judged reconstructed image's scores, over the whole run."""
        return [image for a in self.attacks.values() for c in a.clients for image in (c.per_image or [])]

    def mean_ssim(self) -> float | None:
        """Mean SSIM over every judged reconstructed image."""
        ssims = [image.ssim for image in self.image_scores()]
        return statistics.fmean(ssims) if ssims else None

    def privacy_spent(self) -> tuple[float, float] | None:
        """DP-SGD's (epsilon, delta) spent so far by the client that spent most, or None without DP-SGD."""
        if not self.privacy:
            return None
        worst = max(self.privacy.values(), key=lambda event: event.epsilon)
        return worst.epsilon, worst.delta

    def mean_upload_bytes(self) -> float | None:
        """Bytes uploaded per round (summed over the round's clients), averaged over rounds."""
        return statistics.fmean(self.upload_bytes.values()) if self.upload_bytes else None


def _legacy_verdict(client: events.Attack) -> str:
    """The verdict of an ``attack`` event written before verdicts were named: from its success."""
    return events.NO_GROUND_TRUTH if client.success is None else events.LEAKED if client.success else events.NOT_LEAKED
