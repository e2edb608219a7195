"""The attack papers' setting, pinned apart from the main job's defaults: what benchmarks and attack tests measure in.

The main job (``fl-sim run``) trains an MLP with local SGD and judges every update within a time
budget. The literature's figures are for DLG's LeNet with its uniform(-0.5, 0.5) init (Zhu et al.
2019), every client running the one defense a row names, and attacks at their published iterations
(no budget, so that ``attack.compile=auto`` compiles as it does without one).
"""

#: Settings that reproduce the papers' model and attacks (a configuration's own keys override them).
PAPERS = {"model.name": "lenet", "model.init": "dlg", "model.depth": 2, "defense.per-client": "",
          "attack.budget-seconds": 0.0}
#: FedSGD in the papers' setting: one plain SGD step (lr 0.1) on one image, so ``-update / lr`` is its gradient.
FEDSGD = {**PAPERS, "train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1}
