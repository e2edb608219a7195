"""A run's reconstructions as one picture.

A row per attacked round, each client's ground truth over what the attacker recovered, with the SSIM the run logged
(red: leaked).

    python benchmarks/run_figure.py RUN_DIR [--out docs/run.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, read_image

from fl_sim import events
from fl_sim.results import load_events

from figures import save_rows


def main() -> None:
    """Collect the run's reconstruction grids and its attack events into one PNG."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/run.png"))
    args = parser.parse_args()
    attacks = sorted((e for e in load_events(args.run_dir) if isinstance(e, events.Attack)),
                     key=lambda e: (e.round, e.partition_id))
    rows = []
    for server_round in sorted({e.round for e in attacks}):
        of_round = [e for e in attacks if e.round == server_round]
        grids = [read_image(str(args.run_dir / e.image), ImageReadMode.RGB).float() / 255 for e in of_round]
        height, width = min(g.shape[1] for g in grids), min(g.shape[2] for g in grids)
        rows.append((f"round {server_round}", torch.stack([g[:, :height, :width] for g in grids]),
                     [max(i.ssim for i in e.per_image) for e in of_round]))
    winners = sorted({e.attack for e in attacks if e.success})
    title = (f"{args.run_dir.name}: each client's image (top) over the server's reconstruction\n"
             f"leaked by {', '.join(winners)}")
    print(f"figure: {save_rows(args.out, rows, title)}")


if __name__ == "__main__":
    main()
