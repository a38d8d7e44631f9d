"""Will a run fit in this machine's memory? Estimated before anything is built or written.

A model of 10^11 units, or a generated data set of 10^10 sequences, would otherwise end in
TensorFlow's out-of-memory traceback (or the kernel's OOM killer) after the run directory
exists. The estimates are deliberately rough (they count the big arrays, not every copy);
what matters is refusing what cannot work, with the numbers, before it starts.

    model:  parameters x 4 bytes x 4  (weights, gradients, two optimizer moments)
            + batch_size x timesteps x sum over layers(gates x units x directions)
              x 4 bytes x 3           (activations kept for the backward pass, and their
                                       gradients)
    data:   the arrays of every split, twice (NumPy's and the input pipeline's copy)

No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from seqtrain.errors import ResourceError
from seqtrain.models import GATES

if TYPE_CHECKING:
    from seqtrain.config import ExperimentConfig
    from seqtrain.data import Dataset, TaskSpec


def available_bytes() -> int | None:
    """Memory this process can still take: the kernel's MemAvailable, within a cgroup limit.

    None where neither can be read (not Linux): then nothing is refused.
    """
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),  # cgroup v2
                                   ("memory/memory.limit_in_bytes",     # cgroup v1
                                    "memory/memory.usage_in_bytes")):
        try:  # a container's own limit, less what it uses
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            if limit != "max" and int(limit) < 2**60:  # v1 writes a huge number for none
                used = int(Path("/sys/fs/cgroup", usage_file).read_text())
                found.append(max(int(limit) - used, 0))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def parameter_count(config: ExperimentConfig, spec: TaskSpec) -> int:
    """The model's parameters, counted from the layer sizes as Keras creates them."""
    model = config.model
    directions = 2 if model.bidirectional else 1
    gates = GATES[model.cell]
    inputs = model.embedding_dim if spec.tokens else spec.features
    total = spec.tokens * model.embedding_dim if spec.tokens and model.embedding_dim else 0
    for units in model.layer_units:
        biases = 2 if model.cell == "gru" and model.reset_after else 1
        total += directions * gates * units * (inputs + units + biases)
        inputs = units * directions
    if model.attention == "additive":  # W (D x D), its bias and v
        total += inputs * inputs + 2 * inputs
    elif model.attention == "dot":  # the query
        total += inputs
    return total + inputs * spec.output_units + spec.output_units


def model_bytes(config: ExperimentConfig, spec: TaskSpec) -> int:
    """Rough peak memory of training the model (see the module's formula)."""
    model = config.model
    directions = 2 if model.bidirectional else 1
    width = sum(GATES[model.cell] * units * directions for units in model.layer_units)
    activations = config.train.batch_size * spec.timesteps * width * 4 * 3
    return parameter_count(config, spec) * 4 * 4 + activations


def check_data(config: ExperimentConfig) -> None:
    """Refuse a generated data set too large for memory, from its sizes alone.

    Per step: the float32 features, the targets and weights (4 bytes each), and as much
    again while they are generated and copied into the input pipeline. File tasks are
    checked once loaded (`check_model`): their size is the file's.

    Raises:
        ResourceError: The estimate exceeds the memory available.
    """
    from seqtrain.data.registry import GeneratedTaskParams

    params = config.data
    shape = params.sequence_shape() if isinstance(params, GeneratedTaskParams) else None
    available = available_bytes()
    if shape is None or available is None:
        return
    steps, features = shape
    per_sample = steps * (features + 2) * 4 * 2
    needed = per_sample * params.num_samples
    if needed > available:
        raise ResourceError(
            f"data: {params.num_samples:,} sequences of {steps:,} steps need about "
            f"{_size(needed)} of memory ({_size(per_sample)} each, while generated and "
            f"once more in the input pipeline); this machine has {_size(available)} "
            "available. Lower data.num_samples or the sequence length")


def check_model(config: ExperimentConfig, dataset: Dataset) -> None:
    """Refuse a model (with its data) too large to train in the memory available.

    Raises:
        ResourceError: The estimate exceeds the memory available.
    """
    available = available_bytes()
    if available is None:
        return
    model = model_bytes(config, dataset.spec)
    data = _nbytes(dataset)  # loaded already; what is left to come is the pipeline's copy
    if model + data > available:
        params = parameter_count(config, dataset.spec)
        raise ResourceError(
            f"this run needs about {_size(model + data)} of memory: the model "
            f"{_size(model)} ({params:,} parameters with their gradients and optimizer "
            f"state, and the activations of a batch of {config.train.batch_size}), the data "
            f"{_size(data)}; this machine has {_size(available)} available. Lower "
            "model.units, model.num_layers or train.batch_size")


def _nbytes(dataset: Dataset) -> int:
    return sum(array.nbytes for split in (dataset.train, dataset.val, dataset.test)
               for array in split.arrays)


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:.3g} EiB"

