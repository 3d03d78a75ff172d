"""Loaders for real data: the digits that ship with scikit-learn, MNIST IDX files."""
from ember.datasets.digits import load_digits
from ember.datasets.mnist import load_idx, load_mnist

__all__ = ["load_digits", "load_idx", "load_mnist"]
