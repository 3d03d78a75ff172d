"""Distributed training strategies for fit()."""
from ember.distributed.strategy import SingleProcess, get_strategy

__all__ = ["SingleProcess", "get_strategy"]
