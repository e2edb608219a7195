"""``report.html``: one self-contained page per run (no network; images are files beside it).

It holds the configuration, accuracy and loss per round, the attack success rate per round,
the SSIM/PSNR distributions, and, per round, ground truth over reconstruction for every
attacked client, with the plots also written as PNG files under ``plots/``.
"""

from __future__ import annotations

import html
import json
import statistics
import struct
from collections import Counter
from pathlib import Path

from fl_sim import events
from fl_sim.config import AttackConfig
from fl_sim.reporting import plots
from fl_sim.reporting.formatting import fmt, setting
from fl_sim.reporting.progress import AttackRound, RunProgress
from fl_sim.results import CONFIG, load_events, require_run_directory

REPORT = "report.html"
PLOTS = "plots"
#: Widest a reconstruction grid is drawn, in CSS pixels (the page is 1100 wide).
RECONSTRUCTION_MAX_WIDTH = 1080

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.key { text-align: left; font-family: monospace; }
.plots img { max-width: 49%; } .plots img.wide { max-width: 98%; display: block; }
.grid { display: flex; flex-wrap: wrap; gap: 0.8em 0.6em; align-items: flex-start; }
figure { margin: 0; max-width: 100%; } figure img { max-width: 100%; image-rendering: pixelated; }
figcaption { font-size: 0.8em; text-align: center; line-height: 1.3; }
.leaked { color: #b00020; font-weight: bold; } .safe { color: #1b7f3b; } .undecided { color: #c25e00; }
.status-completed { color: #1b7f3b; } .status-failed, .status-interrupted { color: #b00020; }
"""


#: Plots drawn across the page's width (the heatmap comes first: per-round attack success at a glance).
_WIDE = (plots.HEATMAP, plots.SIMILARITY)


def _table(header: list[str] | None, rows: list[list[str]], left: int = 0) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td{' class=key' if i < left else ''}>{html.escape(str(c))}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def write_report(run_dir: Path) -> Path:
    """Write ``report.html`` and ``plots/*.png`` into ``run_dir`` (a finished or running run); return the page."""
    run_dir = require_run_directory(Path(run_dir))
    config = json.loads((run_dir / CONFIG).read_text())
    progress = RunProgress.from_events(load_events(run_dir), config)
    success_ssim = config.get("attack.success-ssim", AttackConfig().success_ssim)  # older runs: today's default
    figures = plots.plot_run(progress, success_ssim, run_dir / PLOTS)
    sections = [_overview(run_dir, progress),
                '<h2>Plots</h2><div class="plots">' + "".join(
                    f'<img src="{PLOTS}/{p.name}" alt="{p.stem}"{" class=wide" if p.name in _WIDE else ""}>'
                    for p in figures) + "</div>",
                _rounds(progress)]
    if progress.attacks:
        sections.append(_attacks(run_dir, progress))
    if progress.failures:
        sections.append("<h2>Client failures and rejected updates</h2>" + _table(
            ["round", "event", "node", "reason"],
            [[f.round, f.KIND, f.node_id, f.reason] for f in progress.failures]))
    sections.append("<h2>Configuration</h2>" + _table(["key", "value"], [[k, setting(v)] for k, v in config.items()],
                                                      left=1))
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>fl-sim report: "
            f"{html.escape(run_dir.name)}</title><style>{_STYLE}</style></head><body>{''.join(sections)}"
            f"</body></html>\n")
    path = run_dir / REPORT
    temp = path.with_suffix(".html.tmp")
    temp.write_text(page, encoding="utf-8")
    temp.replace(path)
    return path


def _overview(run_dir: Path, progress: RunProgress) -> str:
    last, end = progress.last_round, progress.end
    rows = [["status", progress.status], ["rounds", f"{progress.done} of {progress.total_rounds}"],
            ["final test accuracy", fmt(last.test_accuracy if last else None, ".4f")],
            ["best test accuracy", fmt(end.best_test_accuracy if end else None, ".4f")],
            ["wall time", f"{fmt(end.wall_seconds if end else None, '.1f')} s"],
            ["upload per round (all clients)", f"{fmt(progress.mean_upload_bytes(), ',.0f')} bytes"],
            ["client failures / rejected updates", str(len(progress.failures))]]
    if spent := progress.privacy_spent():
        epsilon, delta = spent
        rows.append(["DP-SGD epsilon spent (most of any client)", f"{epsilon:.2f} at delta {delta:g}"])
    if last and last.epsilon is not None:
        rows.append(["central-DP epsilon (Flower's RdpAccountant; the server adds the noise, so it bounds those "
                     "who see the model, not the server)", f"{last.epsilon:.2f} at delta {last.delta:g}"])
    if progress.attacks:
        counts = progress.verdicts()
        rows.append(["updates leaked / not leaked / undecided (final)",
                     f"{counts[events.LEAKED]} / {counts[events.NOT_LEAKED]} / {counts[events.UNDECIDED]}"
                     + (f" ({progress.provisional()} kept for fl-sim audit)" if progress.provisional() else "")])
        for deep in progress.deep_passes:
            budget = "no limit" if deep.budget_seconds is None else f"{deep.budget_seconds:g} s"
            rows.append(["deep pass", f"{deep.updates} undecided updates taken on in {deep.seconds:.1f} s "
                                      f"(budget: {budget}); {deep.undecided} still undecided"])
        rows += [["attack success rate (clients)", fmt(progress.attack_success_rate(), ".1%")],
                 ["mean SSIM of reconstructions", fmt(progress.mean_ssim())]]
    return (f"<h1>fl-sim run {html.escape(run_dir.name)} "
            f"<span class=status-{html.escape(progress.status)}>({html.escape(progress.status)})</span></h1>"
            + _table(None, rows, left=1))


def _rounds(progress: RunProgress) -> str:
    return "<h2>Rounds</h2>" + _table(
        ["round", "clients", "train loss", "train acc", "eval acc", "test loss", "test acc", "seconds"],
        [[r.round, r.clients, fmt(r.train_loss, ".4f"), fmt(r.train_accuracy, ".4f"), fmt(r.eval_accuracy, ".4f"),
          fmt(r.test_loss, ".4f"), fmt(r.test_accuracy, ".4f"), fmt(r.seconds, ".1f")] for r in progress.rounds])


#: What "leaked" means on this page (the judge's criterion, :mod:`attacker.judge`).
LEAK_CRITERION = ("An image leaks when a reconstruction identifies it (closer to it than to any other image of the "
                  "data set by the margin that real images the client never held reach in at most "
                  "attack.false-leak-rate of updates of the same size) and its SSIM reaches attack.success-ssim; a "
                  "client leaks when one of its images does. \"No leak found\" (not leaked) is a statement about "
                  "the attacks that apply, each run to the end of its setting, not a proof of safety; \"undecided\" "
                  "means nothing leaked but an attack that applies was cut short or never started (fl-sim audit "
                  "continues it).")


def _verdict_html(client: events.Attack) -> str:
    """An attacked update's verdict as the page shows it: a leak, no leak found, or why there is no verdict."""
    verdict = client.verdict or (events.NO_GROUND_TRUTH if client.success is None else
                                 events.LEAKED if client.success else events.NOT_LEAKED)
    style = {events.LEAKED: "leaked", events.NOT_LEAKED: "safe", events.UNDECIDED: "undecided"}.get(verdict)
    text = "no leak found" if verdict == events.NOT_LEAKED else verdict
    if client.phase == events.DEEP_PHASE:
        text += " (deep pass)"
    return f"<span class={style}>{text}</span>" if style else html.escape(text)


def _per_defense(progress: RunProgress) -> str:
    """Updates per client defense and verdict, over the whole run: the defenses side by side."""
    counts: dict[str, Counter] = {}
    for attack in progress.attacks.values():
        for client in attack.clients:
            counts.setdefault(client.defense or "?", Counter())[client.verdict or "?"] += 1
    if not counts:
        return ""
    verdicts = [v for v in events.VERDICTS if any(c[v] for c in counts.values())]
    return "<h3>Updates by defense and verdict</h3>" + _table(
        ["defense", "updates", *verdicts],
        [[name, sum(c.values()), *(c[v] for v in verdicts)] for name, c in sorted(counts.items())])


def _attacks(run_dir: Path, progress: RunProgress) -> str:
    parts = ["<h2>Attacks</h2>", f"<p>{LEAK_CRITERION}</p>", _per_defense(progress), _table(
        ["round", "method", "clients", "leaked above chance", "success", "best SSIM", "median SSIM", "median PSNR",
         "seconds"],
        [[a.round, a.summary.method, a.summary.clients, a.summary.clients_leaked,
          fmt(a.summary.client_success_rate, ".0%"), fmt(a.summary.best_ssim), fmt(a.summary.median_ssim),
          fmt(a.summary.median_psnr, ".1f"), fmt(a.summary.seconds, ".1f")] if a.summary else
         [a.round, a.ended_by, "-", "-", "-", "-", "-", "-", "-"] for a in progress.attack_rows()])]
    for attack in progress.attack_rows():
        parts.append(_attack_round(run_dir, attack))
    return "".join(parts)


def _twice_as_wide(png: Path) -> str:
    """A ``width`` attribute that shows a reconstruction grid at twice its size (up to the page's width)."""
    try:
        with open(png, "rb") as handle:
            width = struct.unpack(">I", handle.read(24)[16:20])[0]  # the IHDR chunk of a PNG
    except (OSError, struct.error):
        return ""
    return f" width={min(2 * width, RECONSTRUCTION_MAX_WIDTH)}"


def _attack_round(run_dir: Path, attack: AttackRound) -> str:
    if attack.summary is None:
        return (f"<h3>Round {attack.round}: {html.escape(attack.ended_by or '')}</h3>"
                f"<p>{html.escape(attack.reason or '')}</p>")
    figures = []
    for client in sorted(attack.clients, key=lambda c: c.partition_id or 0):
        images = client.per_image or []
        verdict = _verdict_html(client)
        if client.defense:
            verdict += f" ({html.escape(client.defense)})"
        scores = (f"<br>SSIM {statistics.fmean(i.ssim for i in images):.3f} · "
                  f"PSNR {statistics.fmean(i.psnr_capped for i in images):.1f} dB") if images else ""
        if client.chance:
            scores += (f"<br>identified {client.images_identified}/{client.held} "
                       f"(needs {fmt(client.chance.required_margin_db, '.1f')} dB over the nearest reference image)")
        picture = (f'<img src="{html.escape(client.image)}" alt="client {client.partition_id}"'
                   f'{_twice_as_wide(run_dir / client.image)}>' if client.image else "<p>(no image saved)</p>")
        figures.append(f"<figure>{picture}<figcaption>client {client.partition_id}: {verdict}{scores}"
                       f"</figcaption></figure>")
    return (f"<h3>Round {attack.round}: ground truth (top) over reconstruction (bottom)</h3>"
            f"<div class=grid>{''.join(figures)}</div>")
