"""Named settings apart from the main job's defaults: the attack papers' setting, and Flower's own template.

The main job (``fl-sim run``) trains an MLP with local SGD and judges every update within a time
budget. The literature's figures are for DLG's LeNet with its uniform(-0.5, 0.5) init (Zhu et al.
2019), every client running the one defense a row names, and attacks at their published iterations
(no budget, so that ``attack.compile=auto`` compiles as it does without one). ``fl-sim run --preset NAME``
runs one of :data:`PRESETS` (a ``--config`` file, flags and ``--set`` override it).
"""

#: Settings that reproduce the papers' model and attacks (a configuration's own keys override them).
PAPERS = {"model.name": "lenet", "model.init": "dlg", "model.depth": 2, "defense.per-client": "",
          "attack.budget-seconds": 0.0}
#: FedSGD in the papers' setting: one plain SGD step (lr 0.1) on one image, so ``-update / lr`` is its gradient.
FEDSGD = {**PAPERS, "train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1}
#: Flower's ``quickstart-pytorch`` template (``flwr new``, PyTorch): its CNN, half the clients training per round,
#: 3 rounds, each client one local epoch of SGD at lr 0.1 with momentum 0.9 on batches of 32 over its partition
#: with 20% held out. The template trains CIFAR-10 on 10 clients (4,000 images, 125 steps each), which cannot be
#: downloaded here: Fashion-MNIST (Debian's ``dataset-fashion-mnist``) stands in, on 15 clients of 3,200 images
#: and 100 local steps, so that an update's images stay within the judge's pool of 4,096, on which it measures
#: chance (:data:`attacker.judge.MAX_POOL`). Every update is attacked.
FLOWER_TEMPLATE = {"model.name": "flower-cnn", "model.init": "default", "data.dataset": "fashion-mnist",
                   "data.image-size": 28, "data.val-fraction": 0.2, "simulation.num-clients": 15,
                   "server.fraction-train": 0.5, "num-server-rounds": 3, "train.optimizer": "sgd", "train.lr": 0.1,
                   "train.momentum": 0.9, "train.batch-size": 32, "train.local-steps": 0, "train.local-epochs": 1,
                   "defense.per-client": "", "attack.enabled": True}

#: The presets ``fl-sim run --preset`` names.
PRESETS = {"fedsgd": FEDSGD, "flower-template": FLOWER_TEMPLATE}
