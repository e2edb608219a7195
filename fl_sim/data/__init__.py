"""Data sets, partitioning among clients, and each client's local view."""

from fl_sim.data.datasets import Dataset, ImageData, load_dataset
from fl_sim.data.federated import ClientData, load_client_data
from fl_sim.data.partition import by_classes, dirichlet, iid, partition

__all__ = ["ClientData", "Dataset", "ImageData", "by_classes", "dirichlet", "iid", "load_client_data",
           "load_dataset", "partition"]
