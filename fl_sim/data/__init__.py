"""Data sets, partitioning among clients, and each client's local view.

The loaders (which need torch) are imported on first use (PEP 562), so that
:mod:`fl_sim.data.files`, which checks a data root without torch, loads without them.
"""

import importlib

from fl_sim.data.partition import partition

_LAZY = {"Dataset": "fl_sim.data.datasets", "ImageData": "fl_sim.data.datasets",
         "load_dataset": "fl_sim.data.datasets", "ClientData": "fl_sim.data.federated",
         "load_client_data": "fl_sim.data.federated"}
__all__ = ["ClientData", "Dataset", "ImageData", "load_client_data", "load_dataset", "partition"]


def __getattr__(name: str):
    """Import the module that defines ``name`` when it is first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'fl_sim.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
