"""Defining models: `Model` subclasses, `wrap()` for any module, `Sequential`, functional models
(`ember.Input` -> layer calls -> `Model(inputs, outputs)`) and layers."""
from ember.define.functional import Functional
from ember.define.model import Model, wrap
from ember.define.sequential import Sequential
from ember.define.summary import Summary
from ember.define.symbolic import Input

__all__ = ["Functional", "Input", "Model", "Sequential", "Summary", "wrap"]
