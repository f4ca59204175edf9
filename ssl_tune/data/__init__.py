"""Datasets as in-memory uint8 tensors, ready to live on the training device."""

from ssl_tune.data.base import DATASETS, ImageData, load_data

__all__ = ["DATASETS", "ImageData", "load_data"]
