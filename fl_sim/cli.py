"""The ``fl-sim`` command line: ``fl-sim run`` launches a simulation, ``fl-sim config`` lists the keys."""

from __future__ import annotations

import argparse
import typing
import sys
from pathlib import Path

from fl_sim.config import RunConfig, describe, parse_assignment, read_toml
from fl_sim.errors import UserError

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
                              description="Settings apply in this order: defaults, --config file, "
                                          "shortcut flags, --set overrides.")
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

    commands.add_parser("config", help="list every configuration key with its default")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Resolve the run configuration from a parsed ``fl-sim run`` command line."""
    flat = read_toml(args.config) if args.config else {}
    flat.update({key: getattr(args, flag) for flag, key in SHORTCUTS.items() if getattr(args, flag) is not None})
    flat.update(parse_assignment(text) for text in args.overrides)
    return RunConfig.from_flat(flat)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fl-sim`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config":
            for key, default, help_text in describe():
                print(f"{key:32s} {default!s:12s} {help_text}")
            return 0
        # Flower and Ray are imported only when a run is asked for
        from fl_sim.simulation import resume_config, simulate

        resume = args.resume is not None
        config = resume_config(args.resume) if resume else config_from_args(args)
        run_dir = simulate(config, verbose=args.verbose, resume=resume, stop_on_signal=True)
    except UserError as err:
        print(f"fl-sim: error: {err}", file=sys.stderr)
        return 2
    print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
