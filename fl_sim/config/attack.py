"""The attacker's section of the schema: which gradient inversion the curious server runs, and how it judges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fl_sim.attack_registry import ATTACKS
from fl_sim.config.flat import setting


@dataclass(frozen=True)
class AttackConfig:
    """The honest-but-curious server: which gradient inversion it runs on intercepted updates."""

    enabled: bool = setting(True, "run the attacker plugin on every intercepted update")
    method: Literal[tuple(ATTACKS)] = setting(
        "auto", "gradient-inversion attack; auto = every applicable attack of a portfolio, the worst case kept")
    iterations: int = setting(0, "optimisation steps; 0 = the method's published default "
                                  "(ig 4800 Adam steps, dlg/idlg 300 L-BFGS steps, analytic's feature "
                                  "inversion 2000, cpa 25000 Adam steps; for auto it sets IG's and the "
                                  "feature inversion's, iDLG and CPA keep theirs)", min=0)
    lr: float = setting(0.0, "attack step size; 0 = the method's default (ig 0.1, dlg/idlg 1.0, cpa 0.001)",
                        min=0)
    tv: float = setting(0.1, "ig: total-variation weight (auto tries 0.1, 0.01 and 0.001)", min=0)
    restarts: int = setting(1, "random restarts per attacked update, lowest final cost kept "
                                "(dlg/idlg restart only while above their stop cost)", min=1)
    multistep: Literal["replay", "approx"] = setting(
        "replay", "ig on updates other than one plain SGD step: replay the client's local training "
                  "(optimizer, epochs, batches) on dummy images, or approx: gradient = -update/(lr*steps)")
    max_images: int = setting(32, "replay: at most this many dummy images per epoch (a client with more "
                                   "is modelled with this many, and the event says so)", min=1)
    stochastic: Literal["sample", "omit", "restore"] = setting(
        "sample", "ig/idlg against PRECODE: sample the bottleneck's noise, omit the bottleneck's and later "
                  "gradients from the matching, or restore (optimise) the noise with the image (ig)")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "where attacks run; auto = cuda when present")
    threads: int = setting(0, "torch threads of the server process, where attacks run; 0 = the cores this "
                               "machine's simulated clients leave free (at least 1)", min=0)
    batched: bool = setting(True, "ig: optimise all attacks of a round as one vmap-batched problem")
    compile: Literal["auto", "on", "off"] = setting(
        "auto", "ig, dlg, idlg: compile the optimisation step with torch.compile (CUDA graphs on a GPU); auto = "
                "for attacks of 2000 or more iterations (so not DLG's 300 L-BFGS steps) on a model without "
                "PRECODE, where a C++ compiler or a GPU is present, and no budget under 60 s per update "
                "(compiling costs tens of seconds per shape); a failed compile then runs uncompiled and the "
                "event says so")
    workers: int = setting(0, "attack workers: 0 = a thread of the server, N = N Ray actors on the simulation's "
                               "Ray or the cluster at simulation.ray-address (each reserves the custom resource "
                               "'attack')", min=0)
    worker_cpus: float = setting(1.0, "units of Ray's 'attack' resource, and torch threads, per attack worker", min=0,
                                  min_exclusive=True)
    worker_gpus: float = setting(0.0, "GPUs per attack worker (num_gpus; with attack.device=auto it attacks there)",
                                  min=0)
    blocking: bool = setting(False, "run attacks inside the round (deterministic) instead of a background worker")
    queue_size: int = setting(4, "background worker: rounds waiting to be attacked before training waits", min=1)
    end_budget_seconds: float = setting(0.0, "at the end of a run, seconds to let pending attacks finish; "
                                              "0 = wait for all", min=0)
    budget_seconds: float = setting(1.0, "time budget per attacked update (a round's attack gets it once per "
                                         "update): at the budget every attack returns its best so far, which is "
                                         "judged, and the event says what was cut short (0 = none)", min=0)
    deep_budget_seconds: float = setting(300.0, "after the last round, seconds in all to attack the updates left "
                                                "undecided (an attack that applies was cut by budget-seconds) on to a "
                                                "final verdict; those it cannot settle stay kept for `fl-sim audit` "
                                                "(0 = no deep pass)", min=0)
    success_ssim: float = setting(0.6, "an image leaks when a reconstruction identifies it (closer to it than "
                                        "chance allows, see attack.false-leak-rate) with an SSIM of at least this",
                                   min=0, max=1)
    false_leak_rate: float = setting(0.005, "the judge's error per update: the identification margin a leak needs "
                                            "is set so that real images the client never held (decoys) would "
                                            "make at most this share of updates of the same size leak", min=0,
                                      max=0.5)
    max_clients: int = setting(0, "attack at most this many clients per round (0 = all)", min=0)
    every: int = setting(1, "attack every n-th round", min=1)
    save_images: bool = setting(True, "save ground truth vs reconstruction PNG grids")
