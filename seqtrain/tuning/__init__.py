"""The CPU speed layer: how a run trains faster on a CPU than plain Keras, and its switch.

Four pieces, each giving the same results as plain Keras (to float32 rounding):

- `loops`: the recurrent layers run seqtrain's step, Keras's cell arithmetic in fewer
  operations;
- `streams`: each batch split into parts that run through the model side by side, each
  on one thread;
- thread choices: one thread per operation where the recurrent products are too small
  for TensorFlow to split well;
- `warm`: the validation step traced in a thread while the first training call runs;

plus Python's garbage collector paused and the import's objects frozen while TensorFlow
starts (`runtime.start_tensorflow`), and the Keras saver's cache fixed (`internals`).

`runtime.cpu_tuning: off` turns all of it off: plain Keras with TensorFlow's own threads.
`auto` turns it on where it applies: on a CPU, with the installed Keras and TensorFlow in
the range the tests cover (`internals.usable`; outside it, one warning line and off). A
run records what it resolved for its CPU (`Tuning.settings`, as `tuning` in
`summary.json`), once, and resume and eval reuse it (`choose`), so a run continued or
scored on another machine computes the same way.

Layering: `runtime` configures TensorFlow, `models` builds the model; this package uses
both and neither uses it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from seqtrain import runtime
from seqtrain.models import GATES

if TYPE_CHECKING:
    import keras

    from seqtrain.config import ExperimentConfig

# The thread and stream rules below were measured on 2 cores (`benchmarks/streams.py`,
# `benchmarks/throughput.py`). `auto` applies them up to that many usable cores; on more,
# TensorFlow's own threads and one stream, until a measurement there says otherwise (set
# `runtime.streams` and `runtime.intra_op_threads` by hand after measuring).
MEASURED_CORES = 2
# `auto` splits a batch while one step's recurrent product, batch x units x gates * units
# multiply-adds, is within these bounds (measured on 2 cores: below, the split gains too
# little to pay for tracing a second loop; above, one stream on all threads is faster).
AUTO_MIN_PRODUCT = 2 * 2**20
AUTO_MAX_PRODUCT = 24 * 2**20
MIN_STREAM_SEQUENCES = 16  # `auto` gives no stream fewer sequences than this


@dataclass(frozen=True)
class Tuning:
    """What the speed layer does for one run.

    Attributes:
        cpu_tuning: `auto` (the layer is on) or `off` (plain Keras).
        streams: Batch streams (`streams`); 1 for none.
        recurrent_loop: `seqtrain` (its step, `loops`) or `keras`.
        intra_op_threads: Threads per operation it sets on the CPU; None: TensorFlow's.
        warm_validation: Trace the validation step in a thread (`warm`).
    """

    cpu_tuning: str = "off"
    streams: int = 1
    recurrent_loop: str = "keras"
    intra_op_threads: int | None = None
    warm_validation: bool = False

    @property
    def enabled(self) -> bool:
        return self.cpu_tuning == "auto"

    def settings(self) -> dict[str, Any]:
        """As `summary.json` records it (`tuning`), for `from_settings`."""
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> Tuning | None:
        """What a run recorded, or None for a run that recorded nothing.

        Runs from before `cpu_tuning` existed recorded what they used as `speed_settings`
        (streams, loop, threads): read as the tuning they resolved.
        """
        if not settings:
            return None
        if "cpu_tuning" in settings:
            return cls(**{key: settings[key] for key in asdict(cls()) if key in settings})
        if "streams" not in settings:
            return None
        one_thread = (settings.get("threads") or {}).get("intra_op") == 1
        return cls(cpu_tuning="auto", streams=settings["streams"],
                   recurrent_loop=settings.get("recurrent_loop", "keras"),
                   intra_op_threads=1 if one_thread else None,
                   warm_validation=bool(settings.get("warm_validation")))


OFF = Tuning()


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def step_product(config: ExperimentConfig) -> int:
    """Multiply-adds of the widest recurrent layer's per-step product `h @ U`."""
    width = max(config.model.layer_units)
    return config.train.batch_size * width * GATES[config.model.cell] * width


def resolve(config: ExperimentConfig, cores: int | None = None) -> Tuning:
    """The tuning `config` trains with on a CPU of `cores` cores (default: this one's).

    `runtime.streams: auto` gives one stream per core, each of at least
    `MIN_STREAM_SEQUENCES` sequences, while the step product is between `AUTO_MIN_PRODUCT`
    and `AUTO_MAX_PRODUCT`. Without streams, a product up to `AUTO_MAX_PRODUCT` runs one
    thread per operation: the other cores take the operations that do not wait on the
    recurrent chain (the weight gradients, the input pipeline). Both only up to
    `MEASURED_CORES` cores, and not under distribution: mirrored (the replicas split the
    batch already, and TensorFlow's threads are kept).
    """
    if config.runtime.cpu_tuning == "off" or not _internals_usable():
        return OFF
    from seqtrain.tuning import loops

    cores = usable_cores() if cores is None else cores
    measured = cores <= MEASURED_CORES and config.distribution == "none"
    streams = config.runtime.streams
    if streams == "auto":
        streams = 1
        if measured and AUTO_MIN_PRODUCT <= step_product(config) <= AUTO_MAX_PRODUCT:
            streams = max(1, min(cores, config.train.batch_size // MIN_STREAM_SEQUENCES))
    one_thread = streams > 1 or (measured and step_product(config) <= AUTO_MAX_PRODUCT)
    return Tuning(cpu_tuning="auto", streams=streams, recurrent_loop=loops.resolve(config),
                  intra_op_threads=1 if one_thread else None,
                  warm_validation=(config.runtime.warm_validation
                                   and config.distribution == "none"))


def _internals_usable() -> bool:
    from seqtrain.tuning import internals

    return internals.usable()


def recorded(summary: dict[str, Any]) -> Tuning | None:
    """The tuning a run's `summary.json` recorded, or None.

    `tuning`; for runs from before it, what their `speed_settings` say they used.
    """
    return Tuning.from_settings(summary.get("tuning") or summary.get("speed_settings"))


def choose(config: ExperimentConfig, chosen: Tuning | None = None) -> Tuning:
    """The run's tuning: `chosen` as its `summary.json` recorded it, else for this machine.

    A recorded `auto` that the installed versions no longer allow becomes off (with the
    warning of `internals.usable`).
    """
    if chosen is None:
        return resolve(config)
    if chosen.enabled and not _internals_usable():
        return OFF
    return chosen


def select(config: ExperimentConfig, chosen: Tuning, device: str | None = None,
           training: bool = True) -> tuple[runtime.Devices, Tuning]:
    """Start TensorFlow for `config` on `device` (default: its own), with tuning `chosen`.

    Args:
        config: The experiment.
        chosen: Its tuning (`choose`).
        device: Where to run, if not `config.device` (eval on another machine).
        training: False to run a trained model (eval): one device, and mixed_float16
            allowed on a CPU.

    Returns:
        The devices, and the tuning in force. On a GPU: Keras's loop (cuDNN), whole
        batches and TensorFlow's threads; warm validation stays.

    Raises:
        DeviceError: A GPU that is not there, or mixed_float16 training without a GPU.
    """
    settings = config.runtime
    mirrored = training and config.distribution == "mirrored"
    devices = runtime.select_device(
        device or config.device, settings.intra_op_threads, settings.inter_op_threads,
        all_gpus=mirrored, cpu_devices=settings.cpu_devices if mirrored else 1,
        cpu_intra_op_threads=chosen.intra_op_threads, freeze_imports=chosen.enabled)
    if devices.is_gpu and chosen.enabled:
        chosen = replace(chosen, streams=1, recurrent_loop="keras", intra_op_threads=None)
    if settings.intra_op_threads and not devices.is_gpu:  # the user's count wins
        chosen = replace(chosen, intra_op_threads=settings.intra_op_threads)
    if training:
        runtime.check_precision(config.precision, devices)
    return devices, chosen


def prepare_process(tuning: Tuning) -> None:
    """Process-wide parts of the tuning, once TensorFlow runs: the saver's cache."""
    if tuning.enabled:
        from seqtrain.tuning import internals

        internals.cache_saving_skipsets()


def install(model: keras.Model, tuning: Tuning) -> keras.Model:
    """Run `model` as `tuning` says: its recurrent layers with seqtrain's step, in streams."""
    if not tuning.enabled:
        return model
    from seqtrain.tuning import loops, streams

    if tuning.recurrent_loop == "seqtrain":
        loops.install(model)
    return streams.install(model, tuning.streams)

