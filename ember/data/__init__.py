"""Data from disk for fit / evaluate / predict: folders of images (decoded in parallel worker processes)
and of texts, with Keras' `*_dataset_from_directory` calls (same arguments, classes, splits and labels),
CSV tables with TensorFlow's `make_csv_dataset` call, and image streams larger than memory from
WebDataset shards or Hugging Face `datasets`, all without TensorFlow.
"""
from ember.data.csv_dataset import TableDataset, csv_dataset
from ember.data.image_dataset import ImageDataset, image_dataset_from_directory
from ember.data.streams import ImageStream, image_stream
from ember.data.text_dataset import TextDataset, text_dataset_from_directory

__all__ = ["ImageDataset", "ImageStream", "TableDataset", "TextDataset", "csv_dataset", "image_dataset_from_directory",
           "image_stream", "text_dataset_from_directory"]
