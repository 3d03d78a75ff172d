"""Data from disk for fit / evaluate / predict: folders of images, decoded in parallel worker processes.

`image_dataset_from_directory` is Keras' function (same arguments, classes, splits and labels),
without TensorFlow.
"""
from ember.data.image_dataset import ImageDataset, image_dataset_from_directory

__all__ = ["ImageDataset", "image_dataset_from_directory"]
