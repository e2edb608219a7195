"""A run on the console: a live rich display on a terminal, one plain line per round elsewhere.

Both read the run's ``events.jsonl`` (through :class:`RunProgress`), so ``fl-sim watch`` from
another terminal shows exactly what ``fl-sim run`` shows, and a log file (CI, ``flwr run
--stream``) gets the same figures as lines.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from fl_sim import events
from fl_sim.reporting.formatting import duration, fmt
from fl_sim.reporting.progress import AttackRound, RunProgress
from fl_sim.results import CONFIG, EVENTS

#: Attack rounds shown in the live table (the most recent ones).
LIVE_ATTACK_ROWS = 12


def attack_line(attack: AttackRound) -> str:
    """One round's attack result as a line of text."""
    if attack.summary is None:
        return f"attack round {attack.round}: {attack.ended_by}: {attack.reason}"
    s = attack.summary
    updates, rate = "aggregates" if s.summed else "clients", fmt(s.client_success_rate, ".0%")
    leaked = f"{s.clients_leaked}/{s.clients_judged} {updates} leaked above chance ({rate})"
    if s.images_held is not None:
        leaked += f", {s.images_leaked}/{s.images_held} images"
    others = {v: n for v, n in (s.verdicts or {}).items() if n and v not in (events.LEAKED, events.NOT_LEAKED)}
    if others:
        leaked += "; " + ", ".join(f"{n} {verdict}" for verdict, n in others.items())
    target = f"the secure aggregate of {s.summed} clients" if s.summed else f"{s.clients} clients"
    return (f"attack round {attack.round}: {s.method} on {target}, {leaked}, "
            f"SSIM best {fmt(s.best_ssim)} median {fmt(s.median_ssim)}, "
            f"PSNR best {fmt(s.best_psnr, '.1f')} median {fmt(s.median_psnr, '.1f')} dB, "
            f"{s.seconds:.1f} s, queue {s.queue}")


class PlainLines:
    """Prints one line per round, per attack result and per client failure (for logs and pipes)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.progress = RunProgress()

    def __call__(self, event: events.Event) -> None:
        """Take one event; print its line, if it has one."""
        self.progress.add(event)
        line = self._line(event)
        if line:
            print(line, file=self.stream, flush=True)

    def _line(self, event: events.Event) -> str | None:
        total = self.progress.total_rounds
        match event:
            case events.Round(round=0):
                return (f"round  0/{total}  initial model: test_loss {fmt(event.test_loss, '.4f')} "
                        f"test_acc {fmt(event.test_accuracy, '.4f')}")
            case events.Round():
                eta = self.progress.eta_seconds()
                return (f"round {event.round:2d}/{total}  clients {event.clients:3d}  "
                        f"train_loss {fmt(event.train_loss, '.4f')}  train_acc {fmt(event.train_accuracy, '.4f')}  "
                        f"test_loss {fmt(event.test_loss, '.4f')}  test_acc {fmt(event.test_accuracy, '.4f')}  "
                        f"{event.seconds:.1f}s" + (f"  eta {duration(eta)}" if eta else "")
                        + (f"  central-DP eps {event.epsilon:.2f}" if event.epsilon is not None else ""))
            case events.AttackRound() | events.AttackError() | events.AttackTimeout() | events.AttackCut():
                return attack_line(self.progress.attacks[event.round])
            case events.ClientFailure():
                return f"client failure, round {event.round}, node {event.node_id}: {event.reason}"
            case events.UpdateRejected():
                return f"update rejected, round {event.round}, partition {event.partition_id}: {event.reason}"
            case events.DeepPass():
                return deep_pass_line(event, self.progress)
        return None


def deep_pass_line(deep: events.DeepPass, progress: RunProgress) -> str:
    """A deep pass as a line: what it settled, and the run's verdicts as they now stand."""
    settled = ", ".join(f"{n} {verdict}" for verdict, n in deep.verdicts.items() if n) or "nothing"
    counts = progress.verdicts()
    budget = "no limit" if deep.budget_seconds is None else f"budget {deep.budget_seconds:g} s"
    return (f"deep pass: {deep.updates} undecided updates attacked on in {deep.seconds:.1f} s ({budget}): "
            f"{settled}; {deep.undecided} still undecided (kept: fl-sim audit). "
            f"Final: {counts[events.LEAKED]} leaked, {counts[events.NOT_LEAKED]} not leaked, "
            f"{counts[events.UNDECIDED]} undecided")


#: Columns of the live attack table: (header, justification); two-line headers keep it within 80 columns.
ATTACK_COLUMNS = (("round", "right"), ("clients", "right"), ("leaked", "right"), ("best\nSSIM", "right"),
                  ("median\nSSIM", "right"), ("best\nPSNR", "right"), ("median\nPSNR", "right"),
                  ("seconds", "right"), ("queue", "right"))


def live_view(progress: RunProgress, title: str) -> Group:
    """The live display: progress with ETA, the current round's figures, and the per-round attack table.

    Every line fits an 80-column terminal; named colours keep the bar visible on 8- and 16-colour ones.
    """
    done, total = progress.done, progress.total_rounds
    header = Text.assemble((f"{title}  ", "bold"), (progress.status, "green" if progress.status in
                                                     ("running", "completed") else "red"))
    bar = Table.grid(padding=(0, 1))
    bar.add_row(Text(f"round {done}/{total}" if total else "starting"),
                ProgressBar(total=max(total, 1), completed=done, width=40, style="bright_black",
                            complete_style="cyan", finished_style="green"),
                Text(f"ETA {duration(progress.eta_seconds())}"))
    last = progress.last_round
    loss, accuracy, test = (last.train_loss, last.train_accuracy, last.test_accuracy) if last else (None, None, None)
    epsilon = f"  eps {last.epsilon:.2f}" if last and last.epsilon is not None else ""
    current = Text(
        f"loss {fmt(loss, '.4f')}  acc {fmt(accuracy, '.4f')}  test acc {fmt(test, '.4f')}  "
        f"clients {progress.clients_this_round}  failures {len(progress.failures)}{epsilon}")
    parts = [header, bar, current]
    if progress.attack_enabled or progress.attacks:
        parts.append(_attack_table(progress))
    return Group(*parts)


def _attack_table(progress: RunProgress) -> Table:
    table = Table(title=f"attacks (pending rounds: {progress.pending_attacks()})", title_justify="left")
    for header, justify in ATTACK_COLUMNS:
        table.add_column(header, justify=justify)
    for attack in progress.attack_rows()[-LIVE_ATTACK_ROWS:]:
        s = attack.summary
        if s is None:
            ended_by = (attack.ended_by or "").removeprefix("attack-")  # cut, timeout or error
            table.add_row(str(attack.round), "-", Text(ended_by, style="red"), *["-"] * 6)
            continue
        table.add_row(str(attack.round), str(s.clients), fmt(s.client_success_rate, ".0%"),
                      fmt(s.best_ssim), fmt(s.median_ssim), fmt(s.best_psnr, ".1f"),
                      fmt(s.median_psnr, ".1f"), f"{s.seconds:.1f}", str(s.queue))
    return table


class EventTail:
    """Reads the events appended to a run's ``events.jsonl`` since the last call (whole lines only)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / EVENTS
        self._offset = 0

    def read(self) -> list[events.Event]:
        """The complete new events, as their classes (a line still being written waits for the next call)."""
        if not self.path.is_file():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [events.parse(json.loads(line)) for line in complete.splitlines() if line.strip()]


def follow(run_dir: Path, stream: TextIO, live: bool, stop: threading.Event | None = None,
           poll_seconds: float = 0.25) -> RunProgress:
    """Show a run as it goes until it ends (or ``stop`` is set); return where it stands.

    ``live`` renders the rich display in place (a terminal); otherwise one line per round.
    """
    stop = stop or threading.Event()
    tail, plain, title = EventTail(run_dir), PlainLines(stream), Path(run_dir).name
    progress = plain.progress

    config_read = False

    def step() -> bool:
        """Take in the new events; whether to stop following."""
        nonlocal config_read
        new = tail.read()
        if new and not config_read:  # config.json is written before the first event: read it once
            progress.attack_enabled = bool(json.loads((Path(run_dir) / CONFIG).read_text()).get("attack.enabled"))
            config_read = True
        for event in new:
            if live:
                progress.add(event)
            else:
                plain(event)
        return progress.finished or stop.is_set()

    if not live:
        while not step():
            time.sleep(poll_seconds)
        return progress
    with Live(live_view(progress, title), console=Console(file=stream, force_terminal=True),
              auto_refresh=False) as display:
        while True:
            finished = step()
            display.update(live_view(progress, title), refresh=True)
            if finished:
                return progress
            time.sleep(poll_seconds)
