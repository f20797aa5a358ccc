"""Datasets: registry, real-file readers, spec A.3 splits, device-resident loader."""

from deepunlearn.data.loader import DeviceData, load_device_data, load_splits, make_generator, prepare_dataset
from deepunlearn.data.registry import DatasetInfo, get_dataset_info, list_datasets, locate, register_dataset
from deepunlearn.data.splits import make_splits, split_checksum, split_sizes

__all__ = ["DatasetInfo", "DeviceData", "get_dataset_info", "list_datasets", "load_device_data", "load_splits",
           "locate", "make_generator", "make_splits", "prepare_dataset", "register_dataset", "split_checksum",
           "split_sizes"]
