"""Aggregation and interception: the ServerApp, the intercepting strategy wrapper, server plugins."""

from strategies.intercepting import InterceptingStrategy
from strategies.plugins import InterceptedUpdate, ServerPlugin, UpdateFilter

__all__ = ["InterceptedUpdate", "InterceptingStrategy", "ServerPlugin", "UpdateFilter"]
