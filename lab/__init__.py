"""The composition root: the one package that knows every role and wires them into runs.

``fl_sim`` is the shared base (configuration, protocol, data, models, training, results, the
server-plugin contract, reporting); ``clients``, ``strategies`` and ``attacker`` are the roles,
each importing only the base. This package builds runs from them: the ServerApp
(:mod:`lab.server_app`), the simulation (:mod:`lab.simulation`), the command line
(:mod:`lab.cli`, :mod:`lab.flwr_run`) and the offline helpers (:mod:`lab.offline`).
"""
