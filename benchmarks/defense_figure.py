"""One picture of the defense table: the same victims, and what the worst-case attack recovers under each defense.

Every defense row of ``defense_table.py`` is applied to ``--clients`` FedSGD updates (plain SGD
lr 0.1, one step on one image, DLG's LeNet), each update is attacked by ``auto`` (the
defense-aware portfolio, its worst case kept per update), and the PNG shows the ground truth
over each defense's reconstructions with their SSIM (red: leaked, SSIM >= 0.6). The same
figures are printed as a table.

    python benchmarks/defense_figure.py [--dataset faces] [--clients 6] [--iterations N] [--out docs/defenses.png]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from defense_table import DEFENSES

from fl_sim.config.presets import FEDSGD

from figures import save_rows
from leakage_table import data_settings
from worst_case import attack_worst_case


def main() -> None:
    """Attack every defense's updates, print the table and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="faces", choices=["digits", "faces", "victims"])
    parser.add_argument("--victims", type=Path, default=Path("../shared/data/precode-victims/128CIF_RECDATA.dict"))
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=0, help="Adam steps of auto's IG and feature inversion "
                                                                  "(0 = published defaults)")
    parser.add_argument("--out", type=Path, default=Path("docs/defenses.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = data_settings(args.dataset, args.victims, Path(tempfile.mkdtemp(prefix="fl-sim-figure-")))
    if data is None:
        return
    rows = []
    print(f"{'defense':<14} {'clients leaked':>15} {'mean SSIM':>10}  won by")
    for name in args.defenses:
        found = attack_worst_case({**data, **FEDSGD, **DEFENSES[name]}, args.clients, args.iterations, time_ig=False)
        if not rows:
            rows.append(("ground truth", torch.cat([truth.tensors()[0] for truth in found.truths]), None))
        scores = [verdict.images[0].scores.ssim for verdict in found.best_verdicts]
        rows.append((name, torch.cat([rec.images[:1] for rec in found.best]), scores))
        leaked = sum(v.leaked for v in found.best_verdicts)
        winners = " ".join(sorted({rec.attack for rec, v in zip(found.best, found.best_verdicts) if v.leaked}))
        print(f"{name:<14} {f'{leaked}/{args.clients}':>15} {statistics.mean(scores):>10.3f}  {winners or '-'}",
              flush=True)
    iterations = f"{args.iterations} Adam steps" if args.iterations else "published iterations"
    title = (f"{args.dataset}: worst case of auto ({iterations}) per defense\n"
             f"FedSGD, LeNet; SSIM under each image, red = leaked")
    print(f"figure: {save_rows(args.out, rows, title)}")


if __name__ == "__main__":
    main()
