"""Every ``attack.method`` the attacker can run, declared once: its runner and its published defaults.

The configuration's allowed values, :class:`attacker.attacks.base.AttackSettings` (a setting of 0
takes the method's default) and the attacker's dispatch (:data:`attacker.attacks.INVERSIONS`) read this
table; runners are named by import path, so that a configuration is checked without importing torch.
Adding an attack is one ``ATTACKS.register`` call and its :class:`attacker.attacks.base.InversionAttack` (which
takes its name and defaults from the entry): its runner,
``run(victim, observations, settings, stop) -> list[Reconstruction]``, and ``why_not(victim, observation)``,
which says where it does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_sim.registry import Registry


@dataclass(frozen=True)
class AttackEntry:
    """One attack.

    Attributes:
        name: the value of ``attack.method``.
        attack: its :class:`attacker.attacks.base.InversionAttack` (``module:object``).
        iterations: its default iterations (0: each attack of a portfolio takes its own).
        lr: its default step size (0: none, or its portfolio's own).
        exact: it reads images back exactly (closed form), so that one read again in a later round is the same
            sample: the attacker banks its recoveries across rounds (:mod:`attacker.across_rounds`).
    """

    name: str
    attack: str
    iterations: int
    lr: float
    exact: bool = False


#: Every attack by name. Published defaults: DLG runs 300 L-BFGS steps at lr 1 (mit-han-lab/dlg, main.py),
#: iDLG the same (PatrickZH/Improved-Deep-Leakage-from-Gradients, iDLG.py); Inverting Gradients 4,800 Adam
#: steps at lr 0.1 (JonasGeiping/invertinggradients, inversefed DEFAULT_CONFIG). The analytic attack's
#: feature inversion (when its linear layer is not the first) runs 2,000 Adam steps at lr 0.1 (ours), as does that of
#: neuron isolation behind convolutions (``feature-isolation``). Neuron
#: isolation is closed-form; through pruning (``pruned-isolation``) it fills the missing pixels in 200 sweeps of a
#: smoothness prior (ours), as it does on a client's uploads summed over its rounds (``across-rounds``). The
#: Cocktail Party Attack's unmixing runs 25,000 Adam steps at lr 0.001 (facebookresearch/cocktail_party_attack,
#: README's command for its fully connected network). SME's surrogate runs 1,000 Adam steps at lr 1 in its
#: normalised pixel units (JunyiZhu-AI/surrogate_model_extension, experiments/configs/femnist_sme.json); Dimitrov et
#: al.'s FedAvg attack 400 at lr 0.4 in the same units (eth-sri/fedavg_leakage, scripts/reconstruct_femnist_table1.sh,
#: ``2 x --att_epochs 200``, ``--att_lr 0.4``). ``auto``
#: leaves 0: each attack of its portfolio takes its own default.
ATTACKS: Registry[AttackEntry] = Registry("attack")

for _entry in (
    AttackEntry("auto", "attacker.attacks.auto:AUTO", 0, 0.0),
    AttackEntry("ig", "attacker.attacks.ig:IG", 4800, 0.1),
    AttackEntry("idlg", "attacker.attacks.dlg:IDLG", 300, 1.0),
    AttackEntry("dlg", "attacker.attacks.dlg:DLG", 300, 1.0),
    AttackEntry("analytic", "attacker.attacks.analytic:ANALYTIC", 2000, 0.1),
    AttackEntry("isolation", "attacker.attacks.isolation:ISOLATION", 1, 0.0, exact=True),
    AttackEntry("pruned-isolation", "attacker.attacks.pruned_isolation:PRUNED_ISOLATION", 200, 0.0),
    AttackEntry("across-rounds", "attacker.attacks.across_rounds:ACROSS_ROUNDS", 200, 0.0),
    AttackEntry("feature-isolation", "attacker.attacks.feature_isolation:FEATURE_ISOLATION", 2000, 0.1),
    AttackEntry("cpa", "attacker.attacks.unmixing:CPA", 25000, 0.001),
    AttackEntry("sme", "attacker.attacks.sme:SME", 1000, 1.0),
    AttackEntry("fedavg", "attacker.attacks.fedavg:FEDAVG", 400, 0.4),
):
    ATTACKS.register(_entry)
