"""Every event a run writes to ``events.jsonl``, with its fields: the one declaration writers and readers share.

A writer builds one of these classes and hands it to :meth:`fl_sim.results.ResultsWriter.emit`,
which writes ``{"event": KIND, "time": ..., **fields}`` as one JSON line. Readers get the same
classes back, each line parsed once by its kind (:func:`parse`, :func:`fl_sim.results.load_events`),
and read their attributes; records nested in an event (an attacked image's scores, chance, an
attack of ``auto``'s portfolio) are classes of their own. Fields added after runs were written
have defaults, so that older runs still read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of every event: ``KIND`` is the value of the line's ``event`` field.

    ``time`` is when it was written: set by the writer, None until then.
    """

    KIND: ClassVar[str]
    time: float | None = field(default=None, kw_only=True)

    def fields(self) -> dict[str, Any]:
        """The event's fields, as written after ``event`` and ``time`` (nested records as mappings)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "time"}


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
    """A round ended: the aggregated client metrics and the global model's test scores (round 0: the start).

    Under central DP with Flower's accountant (``central-dp.*``), ``epsilon`` is what the releases so far have
    spent, at ``delta``: it bounds what those who see the global model learn, not what the server learns (the
    server adds the noise after seeing every update). None without it.
    """

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
    epsilon: float | None = None
    delta: float | None = None


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
class SecureAggregate(Event):
    """A round aggregated under SecAgg+: the clients summed (all the server saw of them is their mean).

    ``samples`` is the samples they hold together (FedAvg's weight); ``densified`` the partitions whose pruned
    upload (topk, dgp) was sent dense, as SecAgg+ masks and sums dense vectors only.
    """

    KIND = "secure-aggregate"
    round: int
    clients: int
    node_ids: list[int]
    partition_ids: list[int | None]
    samples: int
    densified: list[int]


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
    """The privacy a client's own DP has spent so far: epsilon at ``delta``.

    For ``dpsgd`` (Opacus) ``steps`` are its DP-SGD steps; for ``dp`` (Flower's RdpAccountant) its noisy uploads,
    ``sample_rate`` 1.
    """

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
class ImageScore:
    """One reconstructed image of an ``attack`` event: its scores against the image it was matched with.

    ``psnr`` is None for an exact copy (infinite), ``margin_db`` likewise; runs written before the
    judge measured chance lack ``margin_db``, ``identified`` and ``label_recovered``.
    """

    mse: float
    psnr: float | None
    ssim: float
    leaked: bool
    margin_db: float | None = None
    identified: bool | None = None
    label_recovered: bool | None = None

    @property
    def psnr_capped(self) -> float:
        """The PSNR for plots and means, capped at 100 dB (an exact copy's is infinite, logged as null)."""
        return min(self.psnr, 100.0) if self.psnr is not None else 100.0


@dataclass(frozen=True)
class ChanceLevel:
    """What decoys (real images the client never held) reach at an update's counts.

    The margin a leak needs, and the shares of decoy updates and images that would have been identified at it.
    """

    required_margin_db: float | None
    decoy_update_rate: float
    decoy_image_rate: float
    draws: int


@dataclass(frozen=True)
class PortfolioEntry:
    """One attack of ``auto``'s portfolio on one update, and its verdict (None without ground truth)."""

    attack: str
    iterations: int
    seconds: float
    loss: float | None
    success: bool | None = None
    images_leaked: int | None = None
    images_identified: int | None = None
    best_ssim: float | None = None
    mean_ssim: float | None = None
    label_accuracy: float | None = None
    needed: int | None = None
    complete: bool | None = None


@dataclass(frozen=True)
class AttackRun:
    """How far one attack that applies to an update went: the iterations its stages ran, of those its setting needs.

    ``complete`` when every stage ran to its setting's end (or its own stopping criterion); ``unstarted`` names the
    stages that never started on the update (the budget was spent first).
    """

    attack: str
    iterations: int
    needed: int
    seconds: float
    complete: bool
    unstarted: list[str] = field(default_factory=list)


#: What an ``attack`` event concludes of its update: an attack that applied identified an image above chance (and
#: at the SSIM threshold); every attack that applied ran in full and none did; none did but one that applies was
#: cut short or never started (a deep pass may settle it: ``fl-sim audit``); none of the attacks here applies to it;
#: or the server had no ground truth to judge against (a deployment).
LEAKED, NOT_LEAKED, UNDECIDED = "leaked", "not leaked", "undecided"
NO_ATTACK_APPLIES, NO_GROUND_TRUTH = "no attack applies", "no ground truth"
VERDICTS = (LEAKED, NOT_LEAKED, UNDECIDED, NO_ATTACK_APPLIES, NO_GROUND_TRUTH)
#: The ``phase`` of an ``attack`` event: written by the round's attack, or by a deep pass that superseded it.
ROUND_PHASE, DEEP_PHASE = "round", "deep"


@dataclass(frozen=True)
class Attack(Event):
    """One client's update attacked: the reconstruction's scores against the client's real data.

    ``success`` is whether any image leaked, above chance (None without ground truth); ``per_image``
    holds each reconstructed image's mse, psnr, ssim, margin_db (how much closer to its match than
    to any reference image), identified, label_recovered and leaked; ``held`` is how many images
    the update holds, ``images_identified`` how many of them a reconstruction identifies, ``iip``
    the Image Identifiability Precision; ``chance`` what decoys reach at these counts
    (required_margin_db, decoy_update_rate, decoy_image_rate, draws, reference); ``portfolio`` lists
    every attack ``auto`` ran. ``verdict`` is one of :data:`VERDICTS`; ``applied`` names the attacks that
    applied to the update, ``not_applied`` each other one with the reason; ``defense`` is the client's update
    defense. ``label_counts`` are the images per class the update's classifier bias says its local training
    held (None where it does not tell: not SGD, or the bias pruned), ``label_count_accuracy`` their share of
    the held images counted right (:func:`attacker.judge.count_accuracy`; None without ground truth). Runs written
    before the judge measured chance lack ``held`` to ``chance``, runs written before attacks declared where they
    apply lack ``verdict`` to ``defense``, and runs written before label counts lack the rest. ``leaked_samples``
    are the positions in the data set of the images that leaked (simulation only: the judge's ground truth), so
    that a client's share of samples leaked over the run can be counted; ``recurring`` is how many images an
    exact attack (isolation) read back here that it had already read back from this client in an earlier round
    (the attacker's own confirmation, no ground truth: :mod:`attacker.across_rounds`), ``client_confirmed`` how
    many distinct images of this client it has read back in two rounds or more so far (None where no exact
    attack ran). ``clients`` is set for the attack on a secure aggregate (SecAgg+): how many clients' updates it
    sums; its ``node_id`` is 0, its ``held`` the images of them all (the judge's ground truth). ``runs`` says, per
    attack that applied, how far it went (:class:`AttackRun`): the ground of a ``not leaked`` or ``undecided``.
    ``provisional`` is True for an ``undecided`` round verdict whose update was kept for a deep pass; ``phase`` is
    :data:`DEEP_PHASE` for the verdict a deep pass (after the last round, or ``fl-sim audit``) wrote later for the same
    round and update, which supersedes the round's (:func:`standing_attacks`). Runs written before verdicts could be
    undecided lack the last three.
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
    per_image: list[ImageScore] | None
    success: bool | None
    image: str | None
    notes: list[str]
    portfolio: list[PortfolioEntry] | None
    held: int | None = None
    images_identified: int | None = None
    iip: float | None = None
    chance: ChanceLevel | None = None
    verdict: str | None = None
    applied: list[str] | None = None
    not_applied: dict[str, str] | None = None
    defense: str | None = None
    label_counts: list[int] | None = None
    label_count_accuracy: float | None = None
    leaked_samples: list[int] | None = None
    recurring: int | None = None
    client_confirmed: int | None = None
    clients: int | None = None
    runs: list[AttackRun] | None = None
    provisional: bool | None = None
    phase: str | None = None

    @property
    def update_key(self) -> tuple[int, int, int | None]:
        """Which update of the run it judges: (round, node id, partition id); a deep pass's verdict shares its key."""
        return self.round, self.node_id, self.partition_id


@dataclass(frozen=True)
class AttackRound(Event):
    """A round's attack finished: how many clients and images leaked, and the SSIM/PSNR reached.

    ``images`` counts reconstructions, ``images_held`` the images the judged updates held (the
    denominator of ``image_success_rate``); runs written before the judge measured chance lack
    ``images_held`` and ``images_identified``, and runs written before verdicts were named lack ``verdicts`` (the
    clients per verdict). Under SecAgg+ the round's one update is the aggregate of ``summed`` clients (None
    otherwise): ``clients`` then counts that one update.
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
    verdicts: dict[str, int] | None = None
    summed: int | None = None


@dataclass(frozen=True)
class DeepPass(Event):
    """A deep pass ended: the undecided updates it took on, the final verdicts it gave, and those still undecided.

    It runs after the last round (``attack.deep-budget-seconds``) or as ``fl-sim audit`` (``budget_seconds`` of its
    own, None: no limit); each final verdict is an ``attack`` event of phase ``deep``. Updates still undecided stay
    kept for a later pass.
    """

    KIND = "deep-pass"
    updates: int
    verdicts: dict[str, int]
    undecided: int
    seconds: float
    budget_seconds: float | None
    device: str


@dataclass(frozen=True)
class AttackCut(Event):
    """A round's attack was not done: cut at the end-of-run budget, or lost with a stopped run."""

    KIND = "attack-cut"
    round: int
    clients: int | None
    reason: str


@dataclass(frozen=True)
class AttackTimeout(Event):
    """A round's attack ran past ``attack.timeout-seconds`` and was stopped.

    Written by runs before attacks became anytime (``attack.budget-seconds`` ends in a verdict); read for them only.
    """

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
    RunStart, RunResumed, Round, RunEnd, ReportError, ClientTrain, ClientEvaluate, SecureAggregate, ClientFailure,
    UpdateRejected,
    PluginError, Privacy, Attack, AttackRound, DeepPass, AttackCut, AttackTimeout, AttackError)}
#: The ways a round's attack ends without an ``attack-round`` summary.
ATTACK_ENDS_WITHOUT_SUMMARY = (AttackError, AttackTimeout, AttackCut)


def standing_attacks(run_events: Iterable[Event]) -> list[Attack]:
    """The ``attack`` events that stand: per update the latest, a deep pass's verdict superseding its round's one.

    In the order the round events came (a superseded event's place is its final verdict's).
    """
    standing: dict[tuple, Attack] = {}
    for event in run_events:
        if isinstance(event, Attack):
            standing[event.update_key] = event
    return list(standing.values())


def parse(line: Mapping[str, Any]) -> Event:
    """The event a line of ``events.jsonl`` holds, as its class; a kind or a field not declared here raises."""
    kind = line.get("event")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; the kinds are {', '.join(sorted(KINDS))}")
    return _record(KINDS[kind], {key: value for key, value in line.items() if key != "event"})


def _record(cls: type, values: Mapping[str, Any]) -> Any:
    """``cls`` built from ``values``, its nested records (and lists of them) built from theirs."""
    hints = typing.get_type_hints(cls)
    return cls(**{key: _typed(hints[key], value) if key in hints else value for key, value in values.items()})


def _typed(hint: Any, value: Any) -> Any:
    """``value`` as the record class ``hint`` names (through ``| None`` and ``list[...]``), else as it is."""
    if value is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return [_record(typing.get_args(hint)[0], item) for item in value]
    return _record(hint, value) if dataclasses.is_dataclass(hint) else value


def _plain(value: Any) -> Any:
    """A nested record (or list of them) as the mapping the JSON line holds."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
