"""fl-sim's Inverting Gradients side by side with breaching's (Geiping et al.'s own library), same work.

Both attack the same FedSGD updates (DLG's LeNet, digits 32x32 as 3 channels, one image, one plain
SGD step, so the update is the exact gradient), from the same random start, with the same
hyperparameters (Adam on signed gradients, lr 0.1, step decay, boxed pixels, cosine distance +
total variation 0.1, labels given), 1 torch thread, runs interleaved. breaching's attacker is built
from its own packaged config (``invertinggradients``), nothing downloaded. Printed: iterations
per second of each on one update, fl-sim's batched attack of K updates against breaching one by
one, and the median SSIM of the reconstructions (``attacker.judge``); then DLG (image and label
jointly, L-BFGS, breaching's ``deepleakage`` config) on the first ``--dlg-k`` updates, one at a
time in both.

    pip install -e ".[peer]"   # breaching 0.1.2 from PyPI
    python benchmarks/peer_breaching.py [--iterations 1000] [--k 16] [--repeats 2] [--dlg-iterations 300]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import statistics
import time

import torch

from attacker.attacks import ATTACKS, AttackSettings
from attacker.judge import judge
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from lab.offline import intercepted_updates

#: digits served as 3 channels: breaching's total variation is written for RGB
FEDSGD = {"train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1,
          "data.channels": 3, "attack.method": "ig", "attack.tv": 0.1, "attack.lr": 0.1}


def breaching_attacker(model: torch.nn.Module, iterations: int, attack: str = "invertinggradients"):
    """breaching's ``invertinggradients`` or ``deepleakage``, from its packaged config, set to our
    hyperparameters (IG: lr 0.1, TV 0.1; DLG: its own, L-BFGS lr 1, which are ours)."""
    import breaching

    with contextlib.redirect_stdout(io.StringIO()):
        cfg = breaching.get_attack_config(attack)
    cfg.optim.max_iterations = iterations
    cfg.optim.callback = iterations + 1  # no progress lines inside the timing
    if attack == "invertinggradients":
        cfg.optim.step_size = 0.1
        cfg.regularization.total_variation.scale = 0.1
    return breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg,
                                            dict(dtype=torch.float32, device=torch.device("cpu")))


def run_breaching(attacker, victim: Victim, obs: Observation, label: torch.Tensor | None, start: torch.Tensor):
    """One update through breaching (``label`` None: it recovers it, as DLG does); the reconstruction and the
    seconds it took."""
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
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig.from_flat(FEDSGD)
    dataset = load_dataset(config.data)
    updates, truths = intercepted_updates(config, [[(7 * i) % len(dataset.train)] for i in range(args.k)])
    observations = [Observation.from_update(update) for update in updates]
    victim = Victim.from_arrays(config, dataset.input_shape, dataset.num_classes, observations[0].global_arrays,
                                torch.device("cpu"))
    settings = dataclasses.replace(AttackSettings.from_config(config.attack, seed=config.seed), iterations=args.iterations)
    starts = [torch.randn((1, *victim.input_shape), generator=torch.Generator().manual_seed(
        obs.random_stream(settings.seed, 0))) for obs in observations]  # fl-sim's IG start, given to both
    attacker = breaching_attacker(victim.model, args.iterations)

    def ssim(images, truth) -> float:
        return judge(images, truth.labels, *truth.tensors(), threshold=0.6).best_ssim

    ours, theirs = [], []
    for _ in range(args.repeats):  # one update, interleaved
        began = time.perf_counter()
        ATTACKS["ig"](victim, observations[:1], settings)
        ours.append(time.perf_counter() - began)
        theirs.append(run_breaching(attacker, victim, observations[0], truths[0].labels, starts[0])[1])
    one_ours, one_theirs = args.iterations / min(ours), args.iterations / min(theirs)
    began = time.perf_counter()
    batched = ATTACKS["ig"](victim, observations, settings)
    batched_seconds = time.perf_counter() - began
    found = [run_breaching(attacker, victim, obs, truth.labels, start)
             for obs, truth, start in zip(observations, truths, starts)]
    one_by_one = sum(seconds for _, seconds in found)
    quality_ours = statistics.median(ssim(rec.images, truth) for rec, truth in zip(batched, truths))
    quality_theirs = statistics.median(ssim(images, truth) for (images, _), truth in zip(found, truths))
    print(f"IG, DLG LeNet, digits 32x32x3, {args.iterations} iterations, 1 torch thread")
    print(f"{'measure':44} {'fl-sim':>10} {'breaching':>10} {'ratio':>7}")
    print(f"{'one update: attack it/s (best of ' + str(args.repeats) + ')':44} {one_ours:>10.1f} {one_theirs:>10.1f} "
          f"{one_ours / one_theirs:>6.2f}x")
    print(f"{f'{args.k} updates: s (fl-sim batched, breaching each)':44} {batched_seconds:>10.1f} {one_by_one:>10.1f} "
          f"{one_by_one / batched_seconds:>6.2f}x")
    print(f"{f'median SSIM of the {args.k} reconstructions':44} {quality_ours:>10.3f} {quality_theirs:>10.3f}")
    if args.dlg_iterations:
        compare_dlg(victim, observations[:args.dlg_k], truths[:args.dlg_k], starts, settings, args.dlg_iterations)


def compare_dlg(victim: Victim, observations: list[Observation], truths: list, starts: list[torch.Tensor],
                settings: AttackSettings, iterations: int) -> None:
    """DLG (image and label jointly, L-BFGS) one update at a time in both tools, interleaved: it/s and SSIM."""
    dlg = settings.for_method("dlg", iterations=iterations)
    attacker = breaching_attacker(victim.model, iterations, "deepleakage")
    ours, theirs, ssim_ours, ssim_theirs = [], [], [], []
    for obs, truth, start in zip(observations, truths, starts):
        began = time.perf_counter()
        rec = ATTACKS["dlg"](victim, [obs], dlg)[0]
        ours.append(rec.iterations / (time.perf_counter() - began))
        images, seconds = run_breaching(attacker, victim, obs, None, start)
        theirs.append(iterations / seconds)
        ssim_ours.append(judge(rec.images, truth.labels, *truth.tensors(), threshold=0.6).best_ssim)
        ssim_theirs.append(judge(images, truth.labels, *truth.tensors(), threshold=0.6).best_ssim)
    mine, peer = statistics.median(ours), statistics.median(theirs)
    print(f"{f'DLG, {len(observations)} updates: median L-BFGS it/s':44} {mine:>10.1f} {peer:>10.1f} {mine / peer:>6.2f}x")
    print(f"{f'DLG: median SSIM of the {len(observations)}':44} {statistics.median(ssim_ours):>10.3f} "
          f"{statistics.median(ssim_theirs):>10.3f}")


if __name__ == "__main__":
    main()
