"""Defining models: `Model` subclasses, `wrap()` for any module, `Sequential` and layers."""
from ember.define.model import Model, wrap
from ember.define.sequential import Sequential
from ember.define.summary import Summary

__all__ = ["Model", "Sequential", "Summary", "wrap"]
