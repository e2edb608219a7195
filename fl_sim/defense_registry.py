"""Every ``defense.name`` a client can run on its update, declared once, with what the server knows of it.

An entry names the client-side transform (by import path, so that a configuration is checked
without importing torch) and what the protocol tells the server about it that the upload does not:
whether it adds fresh noise (no attack here models unknown noise; the attack event says so), and
which setting, if any, names it in a comparison. Whether it prunes needs no declaring: a pruning
transform returns the entries it kept, its upload travels as their positions and the attacks match
only those. The configuration's allowed values, :func:`clients.defenses.defend`, the attacks and
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
        adds_noise: it adds fresh noise the server cannot know.
        label: a setting shown beside the name in comparisons, and its format (e.g. ``("defense.noise-std", "g")``).
    """

    name: str
    transform: str
    adds_noise: bool = False
    label: tuple[str, str] | None = None


#: Every update defense by name.
DEFENSES: Registry[DefenseEntry] = Registry("defense")

_CLIENT = "clients.defenses:"
for _entry in (
    DefenseEntry("none", _CLIENT + "unchanged"),
    DefenseEntry("noise", _CLIENT + "add_noise", adds_noise=True, label=("defense.noise-std", "g")),
    DefenseEntry("dp", _CLIENT + "clip_and_noise", adds_noise=True),
    # DP-SGD's privacy is in local training (fl_sim.privacy); its update travels as it is
    DefenseEntry("dpsgd", _CLIENT + "unchanged", adds_noise=True),
    DefenseEntry("topk", _CLIENT + "top_k", label=("defense.topk-prune-ratio", ".0%")),
    DefenseEntry("dgp", _CLIENT + "dual_gradient_pruning"),
):
    DEFENSES.register(_entry)
