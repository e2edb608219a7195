"""The run's figures as PNG files (matplotlib, no display needed): utility, loss, attack success, similarity."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402 - after the backend, with the rest
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator  # noqa: E402 - the backend must be chosen first

from fl_sim import events  # noqa: E402 - after the backend, with the rest
from fl_sim.reporting.progress import RunProgress  # noqa: E402 - after the backend, with the rest

#: File names of the plots, under the run's ``plots/`` folder.
ACCURACY, LOSS, ATTACK_SUCCESS, SIMILARITY = "accuracy.png", "loss.png", "attack_success.png", "similarity.png"
HEATMAP = "attack_heatmap.png"

#: Up to this many cells, the heatmap prints each cell's SSIM in it.
ANNOTATED_CELLS = 240


def _save(figure: plt.Figure, path: Path) -> Path:
    for axes in figure.axes:
        if axes.get_xlabel() == "round":
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _series(rows: list[events.Round] | list[events.AttackRound], field: str) -> tuple[list[int], list[float]]:
    """(rounds, values) of the event field ``field`` over ``rows``, where it has a value."""
    points = [(r.round, getattr(r, field)) for r in rows if getattr(r, field) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_run(progress: RunProgress, success_ssim: float, folder: Path) -> list[Path]:
    """Write the run's plots into ``folder``; return their paths (attack plots only if it was attacked)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_heatmap(progress, folder / HEATMAP)] if progress.image_scores() else []
    paths += [_curves(progress, ("test_accuracy", "train_accuracy", "eval_accuracy"), "accuracy",
                      folder / ACCURACY),
              _curves(progress, ("test_loss", "train_loss", "eval_loss"), "loss", folder / LOSS, log=True)]
    if any(attack.summary for attack in progress.attacks.values()):  # not when every attack was cut
        paths.append(_attack_success(progress, folder / ATTACK_SUCCESS))
    if progress.image_scores():
        paths.append(_similarity(progress, success_ssim, folder / SIMILARITY))
    return paths


def _curves(progress: RunProgress, keys: tuple[str, ...], ylabel: str, path: Path, log: bool = False) -> Path:
    """One line per key over rounds; ``log`` puts positive values on a log axis (round 0's loss dwarfs the rest)."""
    figure, axes = plt.subplots(figsize=(6, 3.6))
    plotted = []
    for key in keys:
        rounds, values = _series(progress.rounds, key)
        if values:
            axes.plot(rounds, values, marker="o", markersize=3, label=key.replace("_", " "))
            plotted += values
    if log and plotted and min(plotted) > 0:
        axes.set_yscale("log")
        axes.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 1, 2, 5 per decade, written as numbers
        for set_formatter in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
            set_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ylabel += " (log scale)"
    axes.set_xlabel("round")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _attack_success(progress: RunProgress, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 3.6))
    rows = [a.summary for a in progress.attack_rows() if a.summary]
    # hollow circles over dashed crosses: both lines stay visible where they coincide
    for key, label, style in (("client_success_rate", "clients leaked", dict(marker="o", markersize=8,
                                                                              markerfacecolor="none")),
                              ("image_success_rate", "images leaked", dict(marker="x", markersize=5,
                                                                           linestyle="--"))):
        rounds, values = _series(rows, key)
        if values:
            axes.plot(rounds, values, label=label, **style)
    axes.set_ylim(-0.05, 1.05)
    axes.set_xlabel("round")
    axes.set_ylabel("attack success rate")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _similarity(progress: RunProgress, success_ssim: float, path: Path) -> Path:
    scores = progress.image_scores()
    figure, (ssim_axes, psnr_axes) = plt.subplots(1, 2, figsize=(9, 3.6))
    ssim_axes.hist([s.ssim for s in scores], bins=20, range=(-0.2, 1.0), color="tab:blue")
    ssim_axes.axvline(success_ssim, color="tab:red", linestyle="--", label=f"leak threshold {success_ssim}")
    ssim_axes.set_xlabel("SSIM (reconstruction vs. ground truth)")
    ssim_axes.set_ylabel("images")
    ssim_axes.legend()
    psnr_axes.hist([s.psnr_capped for s in scores], bins=20, color="tab:green")
    psnr_axes.set_xlabel("PSNR dB (capped at 100)")
    psnr_axes.set_ylabel("images")
    for axes in (ssim_axes, psnr_axes):
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of images
    return _save(figure, path)


def _every_nth(labels: list[int], most: int = 20) -> tuple[list[int], list[int]]:
    """Tick positions (cell indices) and their labels, at most ``most`` of them."""
    positions = list(range(0, len(labels), -(-len(labels) // most) or 1))
    return positions, [labels[i] for i in positions]


def _row(attack: events.Attack) -> int | str | None:
    """The heat map's row of an attacked update: its client's partition, or one row for the secure aggregates."""
    if attack.clients:
        return "secure aggregate"
    return attack.partition_id


def _heatmap(progress: RunProgress, path: Path) -> Path:
    """Clients x rounds, coloured by the best SSIM of each attacked client's reconstructions.

    Leaked cells marked with a red dot, undecided ones (an attack that applies was cut) with an orange cross, cells not
    attacked left blank; each cell shows the standing verdict (a deep pass's where one superseded the round's); under
    SecAgg+ one row, the round's aggregate.
    """
    cells = {(_row(c), a.round): (max(i.ssim for i in c.per_image), c.verdict or
                                  (events.LEAKED if c.success else events.NOT_LEAKED))
             for a in progress.attack_rows() for c in a.clients if c.per_image and _row(c) is not None}
    clients = sorted({client for client, _ in cells}, key=lambda row: (isinstance(row, str), str(row).zfill(12)))
    rounds = sorted({server_round for _, server_round in cells})
    row_of, column_of = {c: i for i, c in enumerate(clients)}, {r: i for i, r in enumerate(rounds)}
    grid = np.full((len(clients), len(rounds)), np.nan)
    for (client, server_round), (ssim, _) in cells.items():
        grid[row_of[client], column_of[server_round]] = ssim
    figure, axes = plt.subplots(figsize=(min(max(7.0, 3 + 0.45 * len(rounds)), 14),
                                         min(max(2.5, 1.5 + 0.3 * len(clients)), 12)))
    shown = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto",
                        interpolation="nearest")
    marked = False
    for verdict, style in ((events.LEAKED, dict(s=18, color="tab:red", edgecolors="white", linewidths=0.5)),
                           (events.UNDECIDED, dict(s=26, marker="x", color="tab:orange", linewidths=1.5))):
        where = [(column_of[r], row_of[c]) for (c, r), (_, found) in cells.items() if found == verdict]
        if where:
            axes.scatter(*zip(*where), label=verdict, **style)
            marked = True
    if marked:
        axes.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=8)
    if grid.size <= ANNOTATED_CELLS:
        for (row, column), value in np.ndenumerate(grid):
            if not np.isnan(value):
                axes.text(column, row + 0.3, f"{value:.2f}", ha="center", va="center", fontsize=6,
                          color="white" if value < 0.5 else "black")
    axes.set_xticks(*_every_nth(rounds))
    axes.set_yticks(*_every_nth(clients))
    axes.set_xlabel("round")
    axes.set_ylabel("client (partition)")
    axes.set_title("best SSIM of each attacked client's reconstruction", fontsize=10)
    figure.colorbar(shown, ax=axes, label="best SSIM")
    return _save(figure, path)
