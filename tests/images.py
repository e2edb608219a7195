"""fl-sim's container images for the container tests, built in the background while the other tests run.

A cold build (a Debian base by debootstrap, the wheelhouse, both images) takes minutes, mostly disk and
download work: :func:`start_build` starts ``scripts/build_images.sh`` when the tests are collected (the container
tests are ordered last, see ``conftest.py``), and :func:`wait_for_build` hands its result to the fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "FLWR_DISABLE_UPDATE_CHECK": "1"}
#: Flower's official SuperLink image, the default base; without a registry the images are built --offline.
FLOWER_BASE_IMAGE = "flwr/superlink:1.42.0-py3.11-ubuntu24.04"
#: The longest a build may take.
BUILD_SECONDS = 1800


def compose_command() -> list[str] | None:
    """``docker compose``, or the standalone ``docker-compose``, or None where neither is installed."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 check=False).returncode == 0:
        return ["docker", "compose"]
    return [shutil.which("docker-compose")] if shutil.which("docker-compose") else None


def docker_answers() -> bool:
    """Whether a Docker daemon answers (``.ci/run`` starts one where it can)."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def image_ids() -> set[str]:
    """The ids of every image the daemon holds."""
    listed = subprocess.run(["docker", "image", "ls", "--all", "--quiet", "--no-trunc"], capture_output=True,
                            text=True, check=True)
    return set(listed.stdout.split())


@dataclass
class Build:
    """A running ``scripts/build_images.sh``: the images there were before it, its base, when it started."""

    process: subprocess.Popen
    log: Path
    before: set[str]
    offline: bool
    start: float


_build: Build | None = None


def start_build() -> None:
    """Start building the images in the background (once), on Flower's base image where a registry has it."""
    global _build
    if _build is not None:
        return
    before = image_ids()
    offline = subprocess.run(["docker", "pull", FLOWER_BASE_IMAGE], capture_output=True, check=False).returncode != 0
    log = Path(tempfile.mkstemp(prefix="fl-sim-images-", suffix=".log")[1])
    with log.open("w") as out:
        process = subprocess.Popen([str(ROOT / "scripts" / "build_images.sh"), *(["--offline"] if offline else [])],
                                   cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT)
    _build = Build(process, log, before, offline, time.perf_counter())


def wait_for_build() -> Build:
    """The finished build (started now if it was not): raises with its log's tail if it failed."""
    start_build()
    assert _build is not None
    returncode = _build.process.wait(timeout=BUILD_SECONDS)
    output = _build.log.read_text()
    assert returncode == 0, output[-4000:]
    sizes = "; ".join(output.splitlines()[-2:])
    print(f"\nimages built on {'a Debian base (offline)' if _build.offline else 'Flower images'} in the background, "
          f"{time.perf_counter() - _build.start:.0f} s after collection: {sizes}")
    return _build


def remove_built_images() -> None:
    """Remove every image the build added (a parent image goes only after its children: a pass per generation)."""
    if _build is None:
        return
    for _ in range(3):
        created = image_ids() - _build.before
        if created:
            subprocess.run(["docker", "image", "rm", "--force", *created], capture_output=True, check=False)
    _build.log.unlink(missing_ok=True)


def stop_build() -> None:
    """Stop a build still running (the tests ended before waiting for it) and remove what it built."""
    if _build is None or _build.process.poll() is not None:
        return
    _build.process.terminate()
    _build.process.wait(timeout=60)
    remove_built_images()
