"""Every ``defense.name`` a client can run on its update, declared once, with what the server knows of it.

An entry names the client-side transform (by import path, so that a configuration is checked
without importing torch) and what the protocol tells the server about it that the upload does not:
whether it adds fresh noise (no attack here models unknown noise; the attack event says so), whether it
prunes (its upload travels as the positions of the entries it kept, which the attacks match alone, and
which a dense clipping of the client's weights cannot clip), how its privacy is accounted (per upload,
or per local DP-SGD step, which also makes it a matter of local training for every client), and which
setting, if any, names it in a comparison. The configuration's allowed values and checks,
:func:`clients.defenses.defend`, the privacy ledger, the attacks and ``fl-sim compare`` read this table and
no defense's name. Adding a defense is one ``DEFENSES.register`` call and its transform:
``transform(update, config, residual, generator) -> clients.defenses.DefendedUpdate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fl_sim.registry import Registry

#: How a defense's privacy is accounted: once per upload (the update clipped and noised, Flower's RdpAccountant),
#: or per local step of DP-SGD (Opacus's accountant; the defense is then the clients' local training).
PER_UPLOAD, PER_LOCAL_STEP = "per upload", "per local step"


@dataclass(frozen=True)
class DefenseEntry:
    """One update defense.

    Attributes:
        name: the value of ``defense.name``.
        transform: the client-side function (``module:function``) that makes the upload.
        adds_noise: it adds fresh noise the server cannot know.
        prunes: it uploads only the entries it kept (sparse, with their positions), chosen per layer by magnitude:
            an entry that did not travel is smaller than every one its layer kept, or, where it drops the largest
            too, larger than every one (what the attacks on pruned uploads bound it by).
        largest_share: for a pruning defense that may also drop each layer's largest entries (DGP), not only its
            smallest, the ``defense.*`` setting (as its attribute of :class:`fl_sim.config.DefenseConfig`) of the
            share it drops; where that is 0 it drops only the smallest, as top-k does.
        feedback: for a pruning defense that may keep what it dropped and add it to the client's next update
            (error feedback), the ``defense.*`` setting (attribute) that turns it on: what a round drops then
            travels in a later one, and the sum of a client's uploads is the sum of its updates less one residual.
        accounted: how its epsilon is accounted (:data:`PER_UPLOAD`, :data:`PER_LOCAL_STEP`), or None.
        label: a setting shown beside the name in comparisons, and its format (e.g. ``("defense.noise-std", "g")``).
    """

    name: str
    transform: str
    adds_noise: bool = False
    prunes: bool = False
    largest_share: str | None = None
    feedback: str | None = None
    accounted: Literal["per upload", "per local step"] | None = None
    label: tuple[str, str] | None = None

    @property
    def in_local_training(self) -> bool:
        """Whether its privacy is in local training (DP-SGD): every client runs it or none, on a model it can train."""
        return self.accounted == PER_LOCAL_STEP


#: The defense of a client that uploads its update as it is.
NO_DEFENSE = "none"

#: Every update defense by name.
DEFENSES: Registry[DefenseEntry] = Registry("defense")

_CLIENT = "clients.defenses:"
for _entry in (
    DefenseEntry(NO_DEFENSE, _CLIENT + "unchanged"),
    DefenseEntry("noise", _CLIENT + "add_noise", adds_noise=True, label=("defense.noise-std", "g")),
    DefenseEntry("dp", _CLIENT + "clip_and_noise", adds_noise=True, accounted=PER_UPLOAD),
    # DP-SGD's privacy is in local training (fl_sim.privacy); its update travels as it is
    DefenseEntry("dpsgd", _CLIENT + "unchanged", adds_noise=True, accounted=PER_LOCAL_STEP),
    DefenseEntry("topk", _CLIENT + "top_k", prunes=True, label=("defense.topk-prune-ratio", ".0%")),
    DefenseEntry("dgp", _CLIENT + "dual_gradient_pruning", prunes=True, largest_share="dgp_top_ratio",
                 feedback="error_feedback"),
):
    DEFENSES.register(_entry)
