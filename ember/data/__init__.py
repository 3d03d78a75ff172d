"""Data from disk for fit / evaluate / predict: folders of images (decoded in parallel worker processes)
and of texts, with Keras' `*_dataset_from_directory` calls (same arguments, classes, splits and labels),
without TensorFlow; image streams larger than memory from WebDataset shards or Hugging Face `datasets`.
"""
from ember.data.image_dataset import ImageDataset, image_dataset_from_directory
from ember.data.streams import ImageStream, image_stream
from ember.data.text_dataset import TextDataset, text_dataset_from_directory

__all__ = ["ImageDataset", "ImageStream", "TextDataset", "image_dataset_from_directory", "image_stream",
           "text_dataset_from_directory"]
