"""The SOTOPIA-pi loop: training examples and the policy update (task generation and filtering join later)."""

from .sft_data import SFTExample, examples_from_released, read_examples, write_examples
from .train_config import LoraParams, TrainConfig

__all__ = [
    "LoraParams",
    "SFTExample",
    "TrainConfig",
    "examples_from_released",
    "read_examples",
    "write_examples",
]
