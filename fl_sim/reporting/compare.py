"""Runs side by side (e.g. no defense vs PRECODE vs DGP): privacy, utility and cost in one table and plot."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from fl_sim import events
from fl_sim.defense_registry import DEFENSES, NO_DEFENSE
from fl_sim.reporting.formatting import fmt
from fl_sim.reporting.plots import plt
from fl_sim.reporting.progress import RunProgress
from fl_sim.results import CONFIG, load_events, require_run_directory

COLUMNS = ("run", "defense", "attack", "rounds", "final_accuracy", "attack_success_rate", "updates_leaked",
           "updates_not_leaked", "updates_undecided", "mean_ssim", "upload_bytes_per_round", "wall_seconds")


@dataclass(frozen=True)
class RunFigures:
    """One run's row of the comparison."""

    run: str
    defense: str
    attack: str
    rounds: int
    final_accuracy: float | None
    attack_success_rate: float | None
    updates_leaked: int | None
    updates_not_leaked: int | None
    updates_undecided: int | None
    mean_ssim: float | None
    upload_bytes_per_round: float | None
    wall_seconds: float | None


def defense_label(config: dict) -> str:
    """How a run defends its updates, in a few words (``precode+dgp``, ``noise 0.01``, ``none``)."""
    parts = ["precode"] if config.get("precode.enabled") else []
    name = config.get("defense.name", NO_DEFENSE)
    label = DEFENSES[name].label if name in DEFENSES else None
    if label:
        key, style = label
        parts.append(f"{name} {format(config[key], style)}")
    elif name != NO_DEFENSE:
        parts.append(name)
    return "+".join(parts) or "none"


def run_figures(run_dir: Path) -> RunFigures:
    """The comparison row of one results directory."""
    run_dir = require_run_directory(Path(run_dir))
    config = json.loads((run_dir / CONFIG).read_text())
    progress = RunProgress.from_events(load_events(run_dir), config)
    last, end = progress.last_round, progress.end
    counts = progress.verdicts() if progress.attacks else {}
    return RunFigures(
        run=run_dir.name, defense=defense_label(config),
        attack=config.get("attack.method", "-") if config.get("attack.enabled") else "off",
        rounds=progress.done, final_accuracy=last.test_accuracy if last else None,
        attack_success_rate=progress.attack_success_rate(), updates_leaked=counts.get(events.LEAKED),
        updates_not_leaked=counts.get(events.NOT_LEAKED), updates_undecided=counts.get(events.UNDECIDED),
        mean_ssim=progress.mean_ssim(),
        upload_bytes_per_round=progress.mean_upload_bytes(),
        wall_seconds=end.wall_seconds if end else None)


def format_table(rows: list[RunFigures]) -> str:
    """The comparison as an aligned text table."""
    cells = [["run", "defense", "attack", "rounds", "final acc", "attack success", "leaked", "not leaked",
              "undecided", "mean SSIM", "bytes up/round", "wall s"]]
    for r in rows:
        cells.append([r.run, r.defense, r.attack, str(r.rounds), fmt(r.final_accuracy, ".4f"),
                      fmt(r.attack_success_rate, ".1%"), fmt(r.updates_leaked, "d"), fmt(r.updates_not_leaked, "d"),
                      fmt(r.updates_undecided, "d"), fmt(r.mean_ssim, ".3f"),
                      fmt(r.upload_bytes_per_round, ",.0f"), fmt(r.wall_seconds, ".1f")])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_csv(rows: list[RunFigures], path: Path) -> Path:
    """The comparison as CSV (empty cells where a run has no figure, e.g. no attack)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return path


def plot_privacy_vs_utility(rows: list[RunFigures], path: Path) -> Path:
    """Final accuracy against attack success rate, one labelled point per run.

    Runs without an attack are left out: they have no privacy figure.
    """
    figure, axes = plt.subplots(figsize=(6, 4.2))
    labelled: Counter = Counter()  # runs already labelled at (about) the same point
    for row in rows:
        if row.attack_success_rate is None or row.final_accuracy is None:
            continue
        point = (row.attack_success_rate, row.final_accuracy)
        axes.scatter(*point, s=50)
        right = row.attack_success_rate > 0.7  # label to the left of points near the right edge
        stacked = labelled[(round(point[0], 2), round(point[1], 3))]
        labelled[(round(point[0], 2), round(point[1], 3))] += 1
        axes.annotate(f"{row.run} ({row.defense})", point, textcoords="offset points",
                      xytext=(-5 if right else 5, 5 + 11 * stacked), ha="right" if right else "left", fontsize=8)
    axes.set_xlim(-0.05, 1.05)
    axes.set_xlabel("attack success rate (share of attacked clients leaked; lower is more private)")
    axes.set_ylabel("final test accuracy")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
