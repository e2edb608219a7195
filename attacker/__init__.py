"""Everything the honest-but-curious server does: gradient inversion on intercepted updates, judged.

The attack path (:mod:`attacker.observation`, :mod:`attacker.attacks`) sees only what a real
server sees: the global model it sent, the arrays a client returned, the client's reported
metrics and the round's training settings. Ground truth enters only :mod:`attacker.judge`,
handed over by the simulator, to score reconstructions.
"""
