"""Benchmark the default job: `fl-sim run` on the embedded digits, 10 IID clients, default rounds.

Prints rounds, wall time, final test accuracy, and the peak memory of the whole process tree
(the fl-sim driver plus Ray's GCS, raylet and worker processes, sampled every 0.2 s) as the
sum of their PSS (proportional set size: shared pages are split among the processes sharing
them, so the sum is the real footprint), next to the driver's own peak RSS. Extra arguments
are passed to `fl-sim run`, e.g. `--set train.lr=0.01`.

    python benchmarks/default_run.py [fl-sim run args...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _tree_memory(root: psutil.Process) -> tuple[int, int]:
    """(sum of PSS over ``root`` and all its descendants, RSS of ``root``) in bytes."""
    total, own = 0, 0
    try:
        own = root.memory_info().rss
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except psutil.Error:  # a worker that just exited
                continue
    except psutil.Error:
        pass
    return total, own


def main(extra: list[str]) -> None:
    """Run the default job once and print its figures."""
    out = Path(tempfile.mkdtemp(prefix="fl-sim-bench-"))
    fl_sim = str(Path(sys.executable).parent / "fl-sim")
    command = [fl_sim, "run", "--out", str(out), "--run-id", "bench", *extra]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    peak_total = peak_driver = 0
    while process.poll() is None:
        total, own = _tree_memory(root)
        peak_total, peak_driver = max(peak_total, total), max(peak_driver, own)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    output = process.stdout.read()
    if process.returncode != 0:
        sys.exit(f"fl-sim run failed ({process.returncode}):\n{output[-3000:]}")
    summary = json.loads((out / "bench" / "summary.json").read_text())
    print(f"command                     {' '.join(command[1:])}")
    print(f"rounds                      {summary['rounds']}")
    print(f"final test accuracy         {summary['final_test_accuracy']:.4f}")
    print(f"wall time, whole command    {wall:.1f} s")
    print(f"wall time, federation only  {summary['wall_seconds']:.1f} s")
    print(f"peak PSS, process tree      {peak_total / 2**20:.0f} MiB (driver + Ray processes, summed)")
    print(f"peak RSS, driver            {peak_driver / 2**20:.0f} MiB")
    print(f"results                     {out / 'bench'}")


if __name__ == "__main__":
    main(sys.argv[1:])
