"""Every event a run writes to ``events.jsonl``, with its fields: the one declaration writers and readers share.

A writer builds one of these classes and hands it to :meth:`fl_sim.results.ResultsWriter.emit`,
which writes ``{"event": KIND, "time": ..., **fields}`` as one JSON line. Readers get those lines
back as dicts (:func:`fl_sim.results.read_events`), compare ``event["event"]`` with a class's
``KIND`` and read the fields declared here; :func:`parse` turns a line back into its class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of every event: ``KIND`` is the value of the line's ``event`` field."""

    KIND: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        """The event's fields, as written after ``event`` and ``time``."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


# --- the run ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunStart(Event):
    """A run began: where it writes, how many rounds it will have, after how many it starts."""

    KIND = "run-start"
    run_dir: str
    rounds: int
    from_round: int


@dataclass(frozen=True)
class RunResumed(RunStart):
    """A stopped run went on (``fl-sim run --resume``) from round ``from_round``."""

    KIND = "run-resumed"


@dataclass(frozen=True)
class Round(Event):
    """A round ended: the aggregated client metrics and the global model's test scores (round 0: the start)."""

    KIND = "round"
    round: int
    clients: int
    train_loss: float | None
    train_accuracy: float | None
    eval_loss: float | None
    eval_accuracy: float | None
    test_loss: float
    test_accuracy: float
    samples: int
    seconds: float


@dataclass(frozen=True)
class RunEnd(Event):
    """The run ended: ``status`` is completed, failed or interrupted (the same as ``summary.json``)."""

    KIND = "run-end"
    status: str
    rounds: int
    last_completed_round: int
    final_test_accuracy: float | None
    final_test_loss: float | None
    best_test_accuracy: float | None
    error: str | None = None
    wall_seconds: float | None = None
    server_peak_rss_mb: float | None = None


@dataclass(frozen=True)
class ReportError(Event):
    """The report could not be written (the results are complete); ``fix`` is the command to retry."""

    KIND = "report-error"
    error: str
    fix: str


# --- clients ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientTrain(Event):
    """One client's training reply: its metrics (the protocol's training metrics, snake_case)."""

    KIND = "client-train"
    round: int
    node_id: int
    partition_id: int | None
    train_loss: float
    train_accuracy: float
    num_examples: int
    local_steps: int
    train_seconds: float
    upload_bytes: int
    dense_bytes: int


@dataclass(frozen=True)
class ClientEvaluate(Event):
    """One client's federated-evaluation reply (no validator checks these: a metric the client left out is null)."""

    KIND = "client-evaluate"
    round: int
    node_id: int
    partition_id: int | None
    eval_loss: float | None
    eval_accuracy: float | None
    num_examples: int | None


@dataclass(frozen=True)
class ClientFailure(Event):
    """A client's training failed or did not reply in time: the root cause in one line, the whole text in ``detail``."""

    KIND = "client-failure"
    round: int
    node_id: int
    reason: str
    detail: str | None = None


@dataclass(frozen=True)
class UpdateRejected(Event):
    """The validator dropped a malformed update before aggregation and before any attack."""

    KIND = "update-rejected"
    round: int
    node_id: int
    partition_id: int | None
    reason: str


@dataclass(frozen=True)
class PluginError(Event):
    """A server plugin raised; the strategy left it out for the rest of the round."""

    KIND = "plugin-error"
    round: int
    plugin: str
    error: str


@dataclass(frozen=True)
class Privacy(Event):
    """DP-SGD's privacy spent so far by one client (its steps, and epsilon at ``delta``)."""

    KIND = "privacy"
    round: int
    partition_id: int
    steps: int
    noise_multiplier: float
    sample_rate: float
    epsilon: float
    delta: float


# --- the attacker -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Attack(Event):
    """One client's update attacked: the reconstruction's scores against the client's real data.

    ``success`` is whether any image leaked, above chance (None without ground truth); ``per_image``
    holds each reconstructed image's mse, psnr, ssim, margin_db (how much closer to its match than
    to any reference image), identified, label_recovered and leaked; ``held`` is how many images
    the update holds, ``images_identified`` how many of them a reconstruction identifies, ``iip``
    the Image Identifiability Precision; ``chance`` what decoys reach at these counts
    (required_margin_db, decoy_update_rate, decoy_image_rate, draws, reference); ``portfolio`` lists
    every attack ``auto`` ran. Runs written before the judge measured chance lack the last four.
    """

    KIND = "attack"
    round: int
    node_id: int
    partition_id: int | None
    method: str
    attack: str
    iterations: int
    seconds: float
    device: str
    images: int
    labels: list[int]
    loss: float | None
    label_accuracy: float | None
    per_image: list[dict[str, Any]] | None
    success: bool | None
    image: str | None
    notes: list[str]
    portfolio: list[dict[str, Any]] | None
    held: int | None = None
    images_identified: int | None = None
    iip: float | None = None
    chance: dict[str, Any] | None = None


@dataclass(frozen=True)
class AttackRound(Event):
    """A round's attack finished: how many clients and images leaked, and the SSIM/PSNR reached.

    ``images`` counts reconstructions, ``images_held`` the images the judged updates held (the
    denominator of ``image_success_rate``); runs written before the judge measured chance lack
    ``images_held`` and ``images_identified``.
    """

    KIND = "attack-round"
    round: int
    method: str
    clients: int
    clients_judged: int
    clients_leaked: int
    client_success_rate: float | None
    images: int
    images_leaked: int
    image_success_rate: float | None
    label_accuracy: float | None
    best_ssim: float | None
    median_ssim: float | None
    best_psnr: float | None
    median_psnr: float | None
    seconds: float
    device: str
    queue: int
    images_held: int | None = None
    images_identified: int | None = None


@dataclass(frozen=True)
class AttackCut(Event):
    """A round's attack was not done: cut at the end-of-run budget, or lost with a stopped run."""

    KIND = "attack-cut"
    round: int
    clients: int | None
    reason: str


@dataclass(frozen=True)
class AttackTimeout(Event):
    """A round's attack ran past ``attack.timeout-seconds`` and was stopped."""

    KIND = "attack-timeout"
    round: int
    method: str
    clients: int
    seconds: float
    error: str


@dataclass(frozen=True)
class AttackError(Event):
    """A round's attack raised (out of memory included); the run went on."""

    KIND = "attack-error"
    round: int
    method: str
    clients: int
    error: str


#: Every event class by its kind.
KINDS: dict[str, type[Event]] = {cls.KIND: cls for cls in (
    RunStart, RunResumed, Round, RunEnd, ReportError, ClientTrain, ClientEvaluate, ClientFailure, UpdateRejected,
    PluginError, Privacy, Attack, AttackRound, AttackCut, AttackTimeout, AttackError)}
#: The ways a round's attack ends without an ``attack-round`` summary.
ATTACK_ENDS_WITHOUT_SUMMARY = (AttackError.KIND, AttackTimeout.KIND, AttackCut.KIND)


def parse(line: Mapping[str, Any]) -> Event:
    """The event a line of ``events.jsonl`` holds, as its class; a kind or a field not declared here raises."""
    kind = line.get("event")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; the kinds are {', '.join(sorted(KINDS))}")
    return KINDS[kind](**{key: value for key, value in line.items() if key not in ("event", "time")})
