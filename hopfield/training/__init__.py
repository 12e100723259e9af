"""The training ring: datasets, batches, checkpoints and the training loop.

``train(TrainConfig(...))`` trains a model of the registry (:mod:`hopfield.models`);
``hopfield train`` is its command line. Nothing below ``training`` imports it, and
``import hopfield`` does not load it (``hf.training`` does, on first use).
"""

from ..integrity import ChecksumMismatchError, NonFiniteWeightsError
from .checkpoint import CheckpointError
from .config import TrainConfig
from .data import ImageDataset, list_datasets, load_dataset
from .loader import BatchLoader, Transform
from .safety import RunExistsError
from .trainer import NonFiniteLossError, Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "NonFiniteLossError",
           "ImageDataset", "load_dataset", "list_datasets", "BatchLoader", "Transform",
           "CheckpointError", "ChecksumMismatchError", "NonFiniteWeightsError", "RunExistsError"]
