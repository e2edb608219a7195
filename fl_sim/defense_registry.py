"""Every ``defense.name`` a client can run on its update, declared once, with what the server knows of it.

An entry names the client-side transform (by import path, so that a configuration is checked
without importing torch), the ``defense.*`` settings it reads and what the protocol tells the
server about it: whether its upload is a subset of the coordinates (a pruned upload travels as
the positions it kept, and the attacks match only those), whether it adds fresh noise (no attack
here models unknown noise; the attack event says so), and which setting, if any, names it in a
comparison. The configuration's allowed values, :func:`clients.defenses.defend`, the attacks and
``fl-sim compare`` read this table. Adding a defense is one ``DEFENSES.register`` call and its
transform: ``transform(update, config, residual, generator) -> clients.defenses.DefendedUpdate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_sim.registry import Registry


@dataclass(frozen=True)
class DefenseEntry:
    """One update defense.

    Attributes:
        name: the value of ``defense.name``.
        transform: the client-side function (``module:function``) that makes the upload.
        settings: the ``defense.*`` keys it reads.
        prunes: its upload is a subset of the coordinates, sent as positions and values.
        adds_noise: it adds fresh noise the server cannot know.
        label: a setting shown beside the name in comparisons, and its format (e.g. ``("defense.noise-std", "g")``).
    """

    name: str
    transform: str
    settings: tuple[str, ...] = ()
    prunes: bool = False
    adds_noise: bool = False
    label: tuple[str, str] | None = None


#: Every update defense by name.
DEFENSES: Registry[DefenseEntry] = Registry("defense")

_CLIENT = "clients.defenses:"
for _entry in (
    DefenseEntry("none", _CLIENT + "unchanged"),
    DefenseEntry("noise", _CLIENT + "add_noise", ("defense.noise-std",), adds_noise=True,
                 label=("defense.noise-std", "g")),
    DefenseEntry("dp", _CLIENT + "clip_and_noise", ("defense.dp-clip", "defense.dp-noise-multiplier"),
                 adds_noise=True),
    # DP-SGD's privacy is in local training (fl_sim.privacy); its update travels as it is
    DefenseEntry("dpsgd", _CLIENT + "unchanged", ("defense.dpsgd-max-grad-norm", "defense.dpsgd-noise-multiplier",
                                                  "defense.dpsgd-target-epsilon", "defense.dpsgd-delta"),
                 adds_noise=True),
    DefenseEntry("topk", _CLIENT + "top_k", ("defense.topk-prune-ratio",), prunes=True,
                 label=("defense.topk-prune-ratio", ".0%")),
    DefenseEntry("dgp", _CLIENT + "dual_gradient_pruning",
                 ("defense.dgp-top-ratio", "defense.dgp-bottom-ratio", "defense.error-feedback"), prunes=True),
):
    DEFENSES.register(_entry)
