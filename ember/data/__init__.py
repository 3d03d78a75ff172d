"""Data from disk for fit / evaluate / predict: folders of images (decoded in parallel worker processes)
and of texts, with Keras' `*_dataset_from_directory` calls (same arguments, classes, splits and labels),
without TensorFlow.
"""
from ember.data.image_dataset import ImageDataset, image_dataset_from_directory
from ember.data.text_dataset import TextDataset, text_dataset_from_directory

__all__ = ["ImageDataset", "TextDataset", "image_dataset_from_directory", "text_dataset_from_directory"]
