"""The ``fl-sim`` command line.

``fl-sim run`` launches a simulation, ``fl-sim watch`` follows a run from another terminal,
``fl-sim report`` writes a run's report, ``fl-sim compare`` puts runs side by side, ``fl-sim audit``
attacks a run's undecided updates on to their final verdicts, and ``fl-sim config`` lists the
configuration keys.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import threading
import typing
from pathlib import Path

from fl_sim.config import RunConfig, describe, parse_assignment, read_toml
from fl_sim.config.presets import PRESETS
from fl_sim.errors import EngineStopped, UserError

#: Shortcut flags of ``fl-sim run`` and the config key each one sets.
SHORTCUTS = {
    "clients": "simulation.num-clients",
    "rounds": "num-server-rounds",
    "dataset": "data.dataset",
    "model": "model.name",
    "data_root": "data.root",
    "out": "output.dir",
    "run_id": "output.run-id",
    "seed": "seed",
}


#: Faults of the machine's storage, not of the program: told in one line.
_DISK_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.ENOENT, errno.EROFS, errno.EIO}


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with where to look), exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        """Print ``<prog>: error: <message>`` and a pointer to ``--help``; exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fl-sim`` and its sub-commands."""
    parser = _OneLineParser(prog="fl-sim", description="Federated-learning privacy lab on Flower.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a federated simulation (Flower Simulation Engine, Ray backend)",
                              description="Settings apply in this order: defaults, --preset, --config file, "
                                          "shortcut flags, --set overrides.")
    run.add_argument("--preset", choices=sorted(PRESETS), help="start from named settings (fl_sim/config/presets.py): "
                     "fedsgd, the attack papers' FedSGD; flower-template, Flower's quickstart-pytorch federation")
    run.add_argument("--config", type=Path, help="TOML file of settings (sections or dotted keys)")
    run.add_argument("--clients", type=int, help="number of virtual clients (simulation.num-clients)")
    run.add_argument("--rounds", type=int, help="federated rounds (num-server-rounds)")
    run.add_argument("--dataset", help="data set (data.dataset)")
    run.add_argument("--model", help="model (model.name)")
    run.add_argument("--data-root", help="directory of local data sets (data.root)")
    run.add_argument("--out", help="parent directory of results (output.dir)")
    run.add_argument("--run-id", help="name of the results directory (output.run-id)")
    run.add_argument("--seed", type=int, help="seed (seed)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config key, e.g. --set train.lr=0.05 (repeatable)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue an interrupted run from its last completed round (other settings come "
                          "from RUN_DIR/config.json)")
    run.add_argument("--verbose", action="store_true", help="show Flower's and Ray's own logs")

    watch = commands.add_parser("watch", help="follow a running (or finished) run from its events")
    watch.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    watch.add_argument("--plain", action="store_true", help="one line per round even on a terminal")

    report = commands.add_parser("report", help="write RUN_DIR/report.html, RUN_DIR/plots/*.png and the tidy "
                                                   "RUN_DIR/attacks.csv (and .parquet with pyarrow)")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")

    audit = commands.add_parser(
        "audit", help="attack a finished or interrupted run's undecided updates on to their final verdicts",
        description="Continues the updates RUN_DIR's rounds left undecided (an attack that applies was cut by "
                    "attack.budget-seconds) with the run's attack settings, on this machine (its GPU where "
                    "attack.device=auto finds one); each final verdict is appended to RUN_DIR/events.jsonl, "
                    "superseding the round's, and the tables and report are rewritten. Safe to kill and rerun.")
    audit.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    limit = audit.add_mutually_exclusive_group()
    limit.add_argument("--budget-seconds", type=float, default=None, metavar="S",
                       help="seconds in all for this pass (default: the run's attack.deep-budget-seconds)")
    limit.add_argument("--no-limit", action="store_true",
                       help="no budget: every attack that applies runs to the end of its setting")

    compare = commands.add_parser("compare", help="put runs side by side: accuracy, attack success, bytes, time")
    compare.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    compare.add_argument("--csv", type=Path, default=Path("compare.csv"), help="CSV written (default compare.csv)")
    compare.add_argument("--plot", type=Path, default=Path("compare.png"),
                         help="privacy-vs-utility plot written (default compare.png)")

    flwr_run = commands.add_parser(
        "flwr-run", help="`flwr run --stream` of this app, with the run config checked first and the outcome last",
        description="Checks --run-config as `fl-sim run` checks its settings (one line, exit 2), runs `flwr run "
                    "APP_DIR --stream` (the app in this environment: FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 "
                    "unless set), then prints where the results are (exit 0) or how the run ended (exit 1).")
    flwr_run.add_argument("--app", type=Path, default=Path("."), help="the Flower app's directory (default .)")
    flwr_run.add_argument("--run-config", default="", help="Flower's run-config overrides, e.g. \"train.lr=0.05\"")
    flwr_run.add_argument("flwr_args", nargs="*", metavar="FLWR_RUN_ARG",
                          help="after --, passed on to `flwr run`, e.g. -- --federation-config num-supernodes=10")

    config = commands.add_parser("config", help="list every configuration key with its default")
    config.add_argument("--markdown", action="store_true",
                        help="print the configuration reference as Markdown (what docs/configuration.md holds)")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Resolve the run configuration from a parsed ``fl-sim run`` command line."""
    flat = dict(PRESETS[args.preset]) if args.preset else {}
    flat.update(read_toml(args.config) if args.config else {})
    flat.update({key: getattr(args, flag) for flag, key in SHORTCUTS.items() if getattr(args, flag) is not None})
    flat.update(parse_assignment(text) for text in args.overrides)
    return RunConfig.from_flat(flat)


def configuration_reference() -> str:
    """The configuration reference in Markdown, made from the schema itself, so that the page cannot go stale.

    ``fl-sim config --markdown > docs/configuration.md`` writes it; a test checks the page is current.
    """
    escaped_bar = "\\|"  # a literal | inside a Markdown table cell
    rows = "\n".join(f"| `{key}` | `{json.dumps(default)}` | {help_text.replace('|', escaped_bar)} |"
                     for key, default, help_text in describe())
    return f"""# Configuration

<!-- Generated by `fl-sim config --markdown > docs/configuration.md`; do not edit by hand. -->

One schema, `fl_sim.config.RunConfig`, drives `fl-sim run` (`--config FILE`, shortcut flags,
`--set key=value`), `flwr run .` (`--run-config "key=value ..."`, defaults in `pyproject.toml`) and
the tests. A bad key or value stops before anything starts, with one line naming the key and what is
allowed (exit code 2). Combinations are checked too (e.g. `server.min-available-nodes` above
`simulation.num-clients`, more clients than samples, more classes per client than the data set has).

| key | default | meaning |
|---|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fl-sim`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config" and args.markdown:
            print(configuration_reference(), end="")
        elif args.command == "config":
            from fl_sim.reporting.formatting import setting

            for key, default, help_text in describe():
                print(f"{key:32s} {setting(default):12s} {help_text}")
        elif args.command == "watch":
            _watch(args.run_dir, live=sys.stdout.isatty() and not args.plain)
        elif args.command == "report":
            from fl_sim.reporting.report import write_report
            from fl_sim.reporting.tidy import write_attack_table

            print(f"report: {write_report(args.run_dir)}")
            print(f"attacks: {', '.join(map(str, write_attack_table(args.run_dir)))}")
        elif args.command == "compare":
            _compare(args.run_dirs, args.csv, args.plot)
        elif args.command == "audit":
            _audit(args.run_dir, args.budget_seconds, args.no_limit)
        elif args.command == "flwr-run":
            return _flwr_run(args)
        else:
            _run(args)
            return _exit_past_abandoned_attacks(0)
    except UserError as err:
        print(f"fl-sim: error: {err}", file=sys.stderr)
        return 2
    except EngineStopped as err:
        print(f"fl-sim: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno not in _DISK_FAULTS:
            raise
        where = f"'{err.filename}'" if err.filename else "the results"
        print(f"fl-sim: error: could not write {where} ({err.strerror}): free disk space, or check that the "
              f"results directory still exists; completed rounds are kept for `fl-sim run --resume`", file=sys.stderr)
        return 1
    return 0


def _exit_past_abandoned_attacks(code: int) -> int:
    """End the process now if an attack thread was given up at the end of the run (it ignored its stop).

    Such a thread cannot be joined, and one still inside torch when Python shuts down makes the
    interpreter abort on the way out; everything the run writes is on disk by now.
    """
    from attacker.worker import THREAD_NAME

    if any(thread.name == THREAD_NAME and thread.is_alive() for thread in threading.enumerate()):
        import ray

        ray.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(args: argparse.Namespace) -> None:
    from fl_sim.data.files import check_data_root
    from fl_sim.results import check_output_dir, resume_config

    resume = args.resume is not None
    config = resume_config(args.resume) if resume else config_from_args(args)
    check_data_root(config.data)
    check_output_dir(Path(config.output.dir))
    # Flower, Ray and torch are imported only now, for settings known to be good: a typo answers at once
    from lab.simulation import simulate

    run_dir = simulate(config, verbose=args.verbose, resume=resume, stop_on_signal=True, console=sys.stdout,
                       live=sys.stdout.isatty())
    print(f"results: {run_dir}")


def _flwr_run(args: argparse.Namespace) -> int:
    from lab.flwr_run import flwr_run

    code, last_line = flwr_run(args.app, args.run_config, args.flwr_args)
    print(last_line, file=sys.stderr if code else sys.stdout)
    return code


def _watch(run_dir: Path, live: bool) -> None:
    from fl_sim.reporting.console import follow
    from fl_sim.results import require_run_directory

    try:
        progress = follow(require_run_directory(run_dir), sys.stdout, live)
    except KeyboardInterrupt:  # stops watching; the run itself goes on
        return
    print(f"{run_dir}: {progress.status} after {progress.done} of {progress.total_rounds} rounds")


def _audit(run_dir: Path, budget_seconds: float | None, unlimited: bool) -> None:
    if budget_seconds is not None and not budget_seconds > 0:
        raise UserError(f"--budget-seconds is {budget_seconds:g}; give more than 0 seconds, or --no-limit")
    from lab.deep_audit import audit_run

    summary = audit_run(run_dir, budget_seconds, unlimited, console=sys.stdout)
    print(f"audit: {summary.updates - summary.undecided} of {summary.updates} undecided updates now final, "
          f"{summary.undecided} still undecided; results: {run_dir}")


def _compare(run_dirs: list[Path], csv_path: Path, plot_path: Path) -> None:
    from fl_sim.reporting.compare import format_table, plot_privacy_vs_utility, run_figures, write_csv

    rows = [run_figures(run_dir) for run_dir in run_dirs]
    print(format_table(rows))
    print(f"csv: {write_csv(rows, csv_path)}")
    print(f"plot: {plot_privacy_vs_utility(rows, plot_path)}")


if __name__ == "__main__":
    sys.exit(main())
