"""The run's figures as PNG files (matplotlib, no display needed): utility, loss, attack success, similarity."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fl_sim.reporting.progress import RunProgress  # noqa: E402

#: File names of the plots, under the run's ``plots/`` folder.
ACCURACY, LOSS, ATTACK_SUCCESS, SIMILARITY = "accuracy.png", "loss.png", "attack_success.png", "similarity.png"


def _save(figure: plt.Figure, path: Path) -> Path:
    for axes in figure.axes:
        if axes.get_xlabel() == "round":
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["round"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_run(progress: RunProgress, success_ssim: float, folder: Path) -> list[Path]:
    """Write the run's plots into ``folder``; return their paths (attack plots only if it was attacked)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_curves(progress, ("test_accuracy", "train_accuracy", "eval_accuracy"), "accuracy",
                     folder / ACCURACY),
             _curves(progress, ("test_loss", "train_loss", "eval_loss"), "loss", folder / LOSS)]
    if progress.attacks:
        paths.append(_attack_success(progress, folder / ATTACK_SUCCESS))
    if progress.image_scores():
        paths.append(_similarity(progress, success_ssim, folder / SIMILARITY))
    return paths


def _curves(progress: RunProgress, keys: tuple[str, ...], ylabel: str, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 3.6))
    for key in keys:
        rounds, values = _series(progress.rounds, key)
        if values:
            axes.plot(rounds, values, marker="o", markersize=3, label=key.replace("_", " "))
    axes.set_xlabel("round")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _attack_success(progress: RunProgress, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 3.6))
    rows = [a.summary for a in progress.attack_rows() if a.summary]
    for key, label in (("client_success_rate", "clients leaked"), ("image_success_rate", "images leaked")):
        rounds, values = _series(rows, key)
        if values:
            axes.plot(rounds, values, marker="o", markersize=4, label=label)
    axes.set_ylim(-0.05, 1.05)
    axes.set_xlabel("round")
    axes.set_ylabel("attack success rate")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _similarity(progress: RunProgress, success_ssim: float, path: Path) -> Path:
    scores = progress.image_scores()
    figure, (ssim_axes, psnr_axes) = plt.subplots(1, 2, figsize=(9, 3.6))
    ssim_axes.hist([s["ssim"] for s in scores], bins=20, range=(-0.2, 1.0), color="tab:blue")
    ssim_axes.axvline(success_ssim, color="tab:red", linestyle="--", label=f"leak threshold {success_ssim}")
    ssim_axes.set_xlabel("SSIM (reconstruction vs. ground truth)")
    ssim_axes.set_ylabel("images")
    ssim_axes.legend()
    psnr = [min(s["psnr"], 100.0) for s in scores]  # exact recoveries have unbounded PSNR
    psnr_axes.hist(psnr, bins=20, color="tab:green")
    psnr_axes.set_xlabel("PSNR dB (capped at 100)")
    psnr_axes.set_ylabel("images")
    return _save(figure, path)
