"""Aggregation and interception: the ServerApp, the intercepting FedAvg strategy, server plugins."""

from strategies.intercepting_fedavg import InterceptingFedAvg
from strategies.plugins import InterceptedUpdate, ServerPlugin, UpdateFilter

__all__ = ["InterceptedUpdate", "InterceptingFedAvg", "ServerPlugin", "UpdateFilter"]
