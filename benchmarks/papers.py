"""The attack papers' setting, which the benchmarks measure in, pinned apart from the main job's defaults.

The main job (``fl-sim run``) trains an MLP with local SGD and judges every update within a time
budget; the benchmarks reproduce the literature: DLG's LeNet with its uniform(-0.5, 0.5) init
(Zhu et al. 2019), every client running the one defense a row names, and attacks at their
published iterations (no budget, so that ``attack.compile=auto`` compiles as it did).
"""

#: Settings every benchmark of the papers' setting starts from (its own keys override them).
PAPERS = {"model.name": "lenet", "model.init": "dlg", "model.depth": 2, "defense.per-client": "",
          "attack.budget-seconds": 0.0}
