"""fl-sim's attacks side by side with breaching's (Geiping et al.'s own library), same work.

Both attack the same FedSGD updates (DLG's LeNet, digits 32x32 as 3 channels, one image, one plain
SGD step, so the update is the exact gradient), from the same random start, with the same
hyperparameters and torch threads (1 unless ``--threads``), runs interleaved; breaching's
attackers are built from its own packaged configs, nothing downloaded. fl-sim runs uncompiled
(``attack.compile=off``) and compiled (``on``; each step compiled before the clock starts, the
compile's seconds printed).

Printed: Inverting Gradients (Adam on signed gradients, lr 0.1, step decay, boxed pixels,
cosine distance + total variation 0.1, labels given; ``invertinggradients``) as iterations per
second on one update, fl-sim's batched attack of K updates against breaching one by one, and the
median SSIM of the reconstructions (``attacker.judge``); then DLG (image and label jointly) and
iDLG (label recovered by fl-sim, given to breaching), L-BFGS (``deepleakage``), on the first
``--dlg-k`` updates one at a time in both, as gradient evaluations per second (L-BFGS evaluates
up to 20 times per step and stops early on its tolerances, so its steps are not equal work) and
median SSIM.

    pip install -e ".[peer]"   # breaching 0.1.2 from PyPI
    python benchmarks/peer_breaching.py [--iterations 1000] [--k 16] [--repeats 2] [--dlg-iterations 300]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import statistics
import time

import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.metrics import ssim as pairwise_ssim
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

from attack_throughput import timed, warm_up

#: digits served as 3 channels: breaching's total variation is written for RGB
ATTACKED = {**FEDSGD, "data.channels": 3, "attack.method": "ig", "attack.tv": 0.1, "attack.lr": 0.1}


def breaching_attacker(model: torch.nn.Module, iterations: int, attack: str = "invertinggradients",
                       labels_given: bool = False):
    """Breaching's ``invertinggradients`` or ``deepleakage``, from its packaged config, set to our hyperparameters.

    IG: lr 0.1, TV 0.1; DLG: its own, L-BFGS lr 1, which are ours. ``deepleakage`` with ``labels_given`` optimises the
    image alone (iDLG's setting once its label is known).
    """
    import breaching

    with contextlib.redirect_stdout(io.StringIO()):
        cfg = breaching.get_attack_config(attack)
    if labels_given:
        cfg.attack_type = "optimization"  # breaching refuses joint optimisation when labels are given
    cfg.optim.max_iterations = iterations
    cfg.optim.callback = iterations + 1  # no progress lines inside the timing
    if attack == "invertinggradients":
        cfg.optim.step_size = 0.1
        cfg.regularization.total_variation.scale = 0.1
    return breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg,
                                            dict(dtype=torch.float32, device=torch.device("cpu")))


def run_breaching(attacker, victim: Victim, obs: Observation, label: torch.Tensor | None, start: torch.Tensor):
    """One update through breaching: the reconstruction and the seconds it took.

    With ``label`` None breaching recovers the label, as DLG does.
    """
    from omegaconf import OmegaConf  # breaching's own config library, read by attribute and by key

    metadata = OmegaConf.create(dict(shape=list(victim.input_shape), modality="vision", task="classification",
                                     classes=victim.num_classes))
    payload = [dict(parameters=[victim.params[n] for n in victim.param_names],
                    buffers=list(victim.buffers.values()) or None, metadata=metadata)]
    gradient = obs.gradient_estimate(victim.param_names)
    shared = [dict(gradients=[gradient[n] for n in victim.param_names], buffers=None,
                   metadata=dict(num_data_points=1, labels=label, local_hyperparams=None))]
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        found, _ = attacker.reconstruct(payload, shared, {}, initial_data=start.clone(), dryrun=False)
    return found["data"].detach(), time.perf_counter() - began


def main() -> None:
    """Interleave both tools on the same updates; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--k", type=int, default=16, help="updates of the batched comparison")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of the one-update timing")
    parser.add_argument("--dlg-iterations", type=int, default=300, help="L-BFGS steps of DLG (0 = skip DLG)")
    parser.add_argument("--dlg-k", type=int, default=4, help="updates whose DLG reconstructions are compared")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both tools")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RunConfig.from_flat(ATTACKED)
    dataset = load_dataset(config.data)
    updates, truths = intercepted_updates(config, [[(7 * i) % len(dataset.train)] for i in range(args.k)])
    observations = [Observation.from_update(update) for update in updates]
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    settings = dataclasses.replace(AttackSettings.from_config(config.attack, seed=config.seed),
                                   iterations=args.iterations)
    modes = compile_modes(settings)
    starts = [torch.randn((1, *victim.input_shape), generator=torch.Generator().manual_seed(
        obs.random_stream(settings.seed, 0))) for obs in observations]  # fl-sim's IG start, given to both
    attacker = breaching_attacker(victim.model, args.iterations)
    compile_seconds = {k: warm_up(victim, observations[:k], modes["compiled"]) for k in (1, args.k)}
    one = {"eager": [], "compiled": [], "breaching": []}
    for _ in range(args.repeats):  # one update, interleaved
        for mode, mode_settings in modes.items():
            one[mode].append(timed(lambda s=mode_settings: INVERSIONS["ig"].run(victim, observations[:1], s),
                                   victim.device)[1])
        one["breaching"].append(run_breaching(attacker, victim, observations[0], truths[0].labels, starts[0])[1])
    rate = {tool: args.iterations / min(seconds) for tool, seconds in one.items()}
    batched = {mode: timed(lambda s=mode_settings: INVERSIONS["ig"].run(victim, observations, s), victim.device)
               for mode, mode_settings in modes.items()}
    found = [run_breaching(attacker, victim, obs, truth.labels, start)
             for obs, truth, start in zip(observations, truths, starts)]
    one_by_one = sum(seconds for _, seconds in found)
    quality = {mode: statistics.median(ssim(rec.images, truth) for rec, truth in zip(recs, truths))
               for mode, (recs, _) in batched.items()}
    quality_theirs = statistics.median(ssim(images, truth) for (images, _), truth in zip(found, truths))
    print(f"IG, DLG LeNet, digits 32x32x3, {args.iterations} iterations, {args.threads} torch thread(s); "
          f"fl-sim eager | compiled (compiling took {compile_seconds[1]:.1f} s for one update, "
          f"{compile_seconds[args.k]:.1f} s for {args.k}, once per run, not in the times)")
    print(f"{'measure':46} {'eager':>8} {'compiled':>9} {'breaching':>10} {'ratios':>15}")
    row("one update: attack it/s (best of " + str(args.repeats) + ")", rate["eager"], rate["compiled"],
        rate["breaching"], rate["eager"] / rate["breaching"], rate["compiled"] / rate["breaching"], ".1f")
    row(f"{args.k} updates: s (fl-sim batched, breaching each)", batched["eager"][1], batched["compiled"][1],
        one_by_one, one_by_one / batched["eager"][1], one_by_one / batched["compiled"][1], ".1f")
    row(f"median SSIM of the {args.k} reconstructions", quality["eager"], quality["compiled"], quality_theirs,
        None, None, ".3f")
    if args.dlg_iterations:
        for method in ("dlg", "idlg"):
            compare_lbfgs(victim, method, observations[:args.dlg_k], truths[:args.dlg_k], starts, settings,
                          args.dlg_iterations)


def compile_modes(settings: AttackSettings) -> dict[str, AttackSettings]:
    """fl-sim's two columns: the settings uncompiled (``eager``) and compiled."""
    return {"eager": dataclasses.replace(settings, compile="off"),
            "compiled": dataclasses.replace(settings, compile="on")}


def ssim(images: torch.Tensor, truth) -> float:
    """The best SSIM of any of ``images`` against any of the client's true images."""
    return float(pairwise_ssim(images.clamp(0, 1)[:, None], truth.tensors()[0][None]).max())


def row(measure: str, eager: float, compiled: float, breaching: float, eager_ratio: float | None,
        compiled_ratio: float | None, form: str) -> None:
    """One line of the table: the two fl-sim figures, breaching's, and fl-sim's ratios over breaching."""
    ratios = f"{eager_ratio:.2f}x | {compiled_ratio:.2f}x" if eager_ratio is not None else ""
    print(f"{measure:46} {eager:>8{form}} {compiled:>9{form}} {breaching:>10{form}} {ratios:>15}")


class CountingObjective:
    """breaching's objective with a count of its calls (one gradient evaluation each); the rest passes through."""

    def __init__(self, objective) -> None:
        self.objective, self.calls = objective, 0

    def __call__(self, *args, **kwargs):
        """Count the call, then make it."""
        self.calls += 1
        return self.objective(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.objective, name)


def compare_lbfgs(victim: Victim, method: str, observations: list[Observation], truths: list,
                  starts: list[torch.Tensor], settings: AttackSettings, iterations: int) -> None:
    """DLG or iDLG with L-BFGS, one update at a time in both tools, interleaved.

    DLG optimises image and label jointly; iDLG's label is given to breaching and recovered by fl-sim.
    Equal work is one gradient evaluation (L-BFGS evaluates up to 20
    times per step and stops early on its tolerances), so the rate compared is evaluations per second.
    """
    lbfgs = settings.for_method(method, iterations=iterations)
    modes = compile_modes(lbfgs)
    attack = INVERSIONS[method]
    attack.run(victim, observations[:1], dataclasses.replace(modes["compiled"], iterations=1))  # compile it
    attacker = breaching_attacker(victim.model, iterations, "deepleakage", labels_given=method == "idlg")
    attacker.objective = counter = CountingObjective(attacker.objective)
    rates = {"eager": [], "compiled": [], "breaching": []}
    ssims = {tool: [] for tool in rates}
    for obs, truth, start in zip(observations, truths, starts):
        for mode, mode_settings in modes.items():
            before = sum(step.evaluations for step in victim.steps.values())
            rec, seconds = timed(lambda o=obs, s=mode_settings: attack.run(victim, [o], s)[0], victim.device)
            rates[mode].append((sum(step.evaluations for step in victim.steps.values()) - before) / seconds)
            ssims[mode].append(ssim(rec.images, truth))
        counter.calls = 0
        images, seconds = run_breaching(attacker, victim, obs, truth.labels if method == "idlg" else None, start)
        rates["breaching"].append(counter.calls / seconds)
        ssims["breaching"].append(ssim(images, truth))
    rate = {tool: statistics.median(values) for tool, values in rates.items()}
    row(f"{method.upper()}, {len(observations)} updates: gradient evaluations/s", rate["eager"], rate["compiled"],
        rate["breaching"], rate["eager"] / rate["breaching"], rate["compiled"] / rate["breaching"], ".1f")
    row(f"{method.upper()}: median SSIM of the {len(observations)}", *(statistics.median(ssims[t]) for t in ssims),
        None, None, ".3f")


if __name__ == "__main__":
    main()
