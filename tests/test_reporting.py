"""Observing runs: the event-folded progress, plain and live console views, the report, comparisons."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from fl_sim import events
from fl_sim.reporting.console import PlainLines
from fl_sim.reporting.progress import RunProgress
from fl_sim.reporting.report import write_report
from lab import cli

from local_grid import run_locally

BIN = Path(sys.executable).parent
#: One SGD step on one image per client, attacked inside the round with a short IG: leaks in seconds.
ATTACKED = {"train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1,
            "attack.enabled": True, "attack.method": "ig", "attack.iterations": 150, "attack.blocking": True}


def _round(server_round, clients, train_loss, train_accuracy, test_loss, test_accuracy, seconds):
    return events.Round(round=server_round, clients=clients, train_loss=train_loss, train_accuracy=train_accuracy,
                        eval_loss=None, eval_accuracy=None, test_loss=test_loss, test_accuracy=test_accuracy,
                        samples=0, seconds=seconds)


def _train(server_round, upload_bytes):
    return events.ClientTrain(round=server_round, node_id=1, partition_id=0, train_loss=1.0, train_accuracy=0.5,
                              num_examples=10, local_steps=1, train_seconds=0.1, upload_bytes=upload_bytes,
                              dense_bytes=upload_bytes)


def _attack(partition, ssim, psnr, leaked):
    return events.Attack(round=1, node_id=partition, partition_id=partition, method="ig", attack="ig", iterations=1,
                         seconds=1.0, device="cpu", images=1, labels=[0], loss=0.0, label_accuracy=1.0,
                         per_image=[events.ImageScore(mse=0.01, psnr=psnr, ssim=ssim, leaked=leaked)], success=leaked,
                         image=None, notes=[], portfolio=None)


def _events():
    """A two-of-three-rounds run with an attack reported for round 1 only and one failing client."""
    return [
        events.RunStart(run_dir="r", rounds=3, from_round=0, time=100.0),
        _round(0, 0, None, None, 2.3, 0.1, 0.0),
        _train(1, 1000),
        _train(1, 1000),
        _attack(0, 0.9, 25.0, True),
        _attack(1, 0.3, 12.0, False),
        _round(1, 2, 2.0, 0.3, 1.9, 0.4, 4.0),
        events.AttackRound(round=1, method="ig", clients=2, clients_judged=2, clients_leaked=1, client_success_rate=0.5,
                           images=2, images_leaked=1, image_success_rate=0.5, label_accuracy=1.0, best_ssim=0.9,
                           median_ssim=0.6, best_psnr=25.0, median_psnr=18.5, seconds=3.2, device="cpu", queue=0,
                           images_held=2, images_identified=1),
        events.ClientFailure(round=2, node_id=7, reason="InjectedFault: boom"),
        _train(2, 3000),
        _round(2, 1, 1.5, 0.5, 1.4, 0.6, 6.0),
    ]


def test_progress_is_folded_from_events():
    progress = RunProgress.from_events(_events(), {"attack.enabled": True})
    assert (progress.done, progress.total_rounds, progress.status) == (2, 3, "running")
    assert progress.eta_seconds() == pytest.approx(5.0)  # median of 4 s and 6 s, one round left
    assert progress.pending_attacks() == 1  # round 2 not reported yet
    assert progress.attack_success_rate() == 0.5
    assert progress.mean_ssim() == pytest.approx(0.6)
    assert progress.mean_upload_bytes() == pytest.approx(2500.0)
    assert [f.node_id for f in progress.failures] == [7]
    progress.add(events.RunEnd(status="completed", rounds=3, last_completed_round=3, final_test_accuracy=0.6,
                               final_test_loss=1.4, best_test_accuracy=0.6))
    assert progress.finished and progress.eta_seconds() is None and progress.pending_attacks() == 0


def test_plain_lines_print_rounds_attacks_and_failures():
    stream = io.StringIO()
    echo = PlainLines(stream)
    for event in _events():
        echo(event)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "round  0/3  initial model: test_loss 2.3000 test_acc 0.1000"
    assert lines[1].startswith("round  1/3  clients   2  train_loss 2.0000") and lines[1].endswith("eta 0:00:08")
    assert lines[2] == ("attack round 1: ig on 2 clients, 1/2 clients leaked above chance (50%), 1/2 images, "
                        "SSIM best 0.900 median 0.600, PSNR best 25.0 median 18.5 dB, 3.2 s, queue 0")
    assert lines[3] == "client failure, round 2, node 7: InjectedFault: boom"
    assert lines[4].startswith("round  2/3") and len(lines) == 5


def test_plain_lines_show_a_dash_for_a_loss_that_is_not_finite():
    stream = io.StringIO()  # a diverged model's loss is logged as null (JSON has no inf)
    echo = PlainLines(stream)
    echo(events.RunStart(run_dir="r", rounds=1, from_round=0, time=0.0))
    echo(_round(0, 0, None, None, None, 0.1, 0.0))
    echo(_round(1, 2, None, 0.1, None, None, 1.0))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "round  0/1  initial model: test_loss - test_acc 0.1000"
    assert "test_loss -  test_acc -" in lines[1]


@pytest.fixture(scope="module")
def attacked_runs(tmp_path_factory):
    """Two finished runs on 3 clients x 2 rounds with every update attacked: undefended and DGP."""
    from fl_sim.config import RunConfig

    from conftest import TINY

    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for run_id, defense in (("none", {}), ("dgp", {"defense.name": "dgp"})):
        config = RunConfig.from_flat({**TINY, **ATTACKED, **defense, "output.report": True,
                                      "output.dir": str(out), "output.run-id": run_id})
        runs[run_id] = run_locally(config)
    return runs


def test_a_run_writes_its_report_with_plots_and_every_reconstruction(attacked_runs):
    run_dir = attacked_runs["none"]
    page = (run_dir / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources[0] == "plots/attack_heatmap.png"  # per-round attack success at a glance, first
    assert {"plots/accuracy.png", "plots/loss.png", "plots/attack_success.png", "plots/similarity.png"} <= set(sources)
    reconstructions = [s for s in sources if s.startswith("reconstructions/")]
    assert sorted(reconstructions) == [f"reconstructions/round-{r}/client-{c}.png" for r in (1, 2) for c in range(3)]
    assert all((run_dir / s).read_bytes().startswith(b"\x89PNG") for s in sources)
    assert "http" not in page  # nothing from the network
    assert "attack success rate (clients)" in page and "Configuration" in page
    assert page.count("identified ") >= 6 and "needs " in page and "attack.false-leak-rate" in page
    assert "<td>true</td>" in page and "<td>false</td>" in page and "True" not in page and "False" not in page
    assert write_report(run_dir) == run_dir / "report.html"  # `fl-sim report` rewrites it


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="chromium and chromedriver are not installed (.ci/run installs them)")
def test_report_renders_in_headless_chromium_with_every_image_and_no_console_error(attacked_runs, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                 "--disable-sync", "--no-first-run", "--window-size=1200,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((attacked_runs["none"] / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert len(images) >= 4 + 6
    assert all(complete and width > 0 for _, complete, width in images), images
    assert errors == []
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000


def _in_pty(args: list[str], timeout: float, columns: int = 80) -> str:
    """Run ``args`` with a pseudo-terminal ``columns`` wide as stdout (so it sees a terminal); return what it drew."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "50"}
    process = subprocess.Popen(args, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.kill()
    process.wait()
    os.close(controller)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))


def test_watch_draws_the_live_round_table_within_80_columns(attacked_runs):
    drawn = _in_pty([str(BIN / "fl-sim"), "watch", str(attacked_runs["none"])], timeout=60, columns=80)
    assert "round 2/2" in drawn and "completed" in drawn and "round 0/0" not in drawn
    assert re.search(r"best\s+.\s+median\s+.\s+best\s+.\s+median", drawn), drawn  # headers whole, on two lines
    headers = r"round\s+.\s+clients\s+.\s+leaked\s+.\s+SSIM\s+.\s+SSIM\s+.\s+PSNR\s+.\s+PSNR\s+.\s+seconds"
    assert re.search(headers, drawn)
    assert re.search(r"\s2\s+.\s+3\s+.\s+\d+%", drawn), drawn  # the row of round 2: 3 clients attacked
    assert max(len(line) for line in re.split(r"[\r\n]", drawn)) <= 80


def test_watch_prints_plain_lines_when_not_on_a_terminal(attacked_runs):
    done = subprocess.run([str(BIN / "fl-sim"), "watch", str(attacked_runs["none"])], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("attack round")] == [
        "attack round 1", "attack round 2"]
    assert done.stdout.splitlines()[-1].endswith("completed after 2 of 2 rounds")


def test_compare_prints_the_table_and_writes_the_csv_and_the_plot(attacked_runs, tmp_path, capsys):
    csv_path, plot_path = tmp_path / "cmp.csv", tmp_path / "cmp.png"
    assert cli.main(["compare", str(attacked_runs["none"]), str(attacked_runs["dgp"]), "--csv", str(csv_path),
                     "--plot", str(plot_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run", "defense", "attack", "rounds"]
    assert table[2].split()[:4] == ["none", "none", "ig", "2"] and table[3].split()[:4] == ["dgp", "dgp", "ig", "2"]
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["run"], r["defense"]) for r in rows] == [("none", "none"), ("dgp", "dgp")]
    none, dgp = rows
    assert float(dgp["upload_bytes_per_round"]) < float(none["upload_bytes_per_round"]) / 2  # DGP sends sparse
    assert float(dgp["mean_ssim"]) < float(none["mean_ssim"])
    assert all(0 <= float(r["final_accuracy"]) <= 1 and float(r["wall_seconds"]) > 0 for r in rows)
    assert plot_path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.e2e
def test_fl_sim_run_on_a_terminal_shows_the_live_attack_table(tmp_path):
    overrides = [f"--set={k}={v}" for k, v in {**ATTACKED, "data.image-size": 16, "attack.blocking": False}.items()]
    drawn = _in_pty([str(BIN / "fl-sim"), "run", "--clients", "3", "--rounds", "2", "--out", str(tmp_path),
                     "--run-id", "live", *overrides], timeout=300)
    assert "results: " in drawn, drawn[-3000:]
    assert re.search(r"round 2/2.*ETA", drawn) and "attacks (pending rounds:" in drawn
    assert re.search(r"round\s+.\s+clients\s+.\s+leaked\s+.\s+SSIM\s+.\s+SSIM\s+.\s+PSNR", drawn)
    assert "round 0/0" not in drawn and "Manually terminating" not in drawn
    assert max(len(line) for line in re.split(r"[\r\n]", drawn)) <= 80
    assert (tmp_path / "live" / "report.html").is_file()
