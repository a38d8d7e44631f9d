"""Sequence tasks: a registry of numpy dataset builders (no TensorFlow here)."""

from seqtrain.data import (  # noqa: F401  (registers)
    bits,
    digits,
    files,
    memory,
    series,
    tables,
    text,
)
from seqtrain.data.registry import (
    Dataset,
    Split,
    TaskParams,
    TaskSpec,
    build_dataset,
    get_task,
    register_task,
    task_names,
    task_params_models,
)

__all__ = [
    "Dataset",
    "Split",
    "TaskParams",
    "TaskSpec",
    "build_dataset",
    "get_task",
    "register_task",
    "task_names",
    "task_params_models",
]
