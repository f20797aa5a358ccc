"""Deep Unlearn: a reproducible benchmark of machine unlearning for image classification."""

from deepunlearn.data import get_dataset_info, list_datasets, load_device_data
from deepunlearn.models import create_model, list_models
from deepunlearn.store import Store

__all__ = ["Store", "create_model", "get_dataset_info", "list_datasets", "list_models", "load_device_data"]
