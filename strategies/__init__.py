"""Aggregation and interception: any Flower strategy, wrapped so that server plugins see every update."""

from strategies.intercepting import InterceptingStrategy

__all__ = ["InterceptingStrategy"]
