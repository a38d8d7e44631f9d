"""The one place TensorFlow is configured: environment, device, seeds, determinism.

`prepare()` must run before the first `import tensorflow` / `import keras` anywhere in the
process: hiding GPUs and choosing the Keras backend only work before TensorFlow starts.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from seqtrain.errors import DeviceError

if TYPE_CHECKING:
    from seqtrain.config import ExperimentConfig


@dataclass(frozen=True)
class Devices:
    """The devices a run trains on, as TensorFlow names them."""

    requested: str
    used: list[str]
    details: list[dict] = field(default_factory=list)
    threads: dict = field(default_factory=dict)
    streams: int = 1
    recurrent_loop: str = "keras"

    @property
    def is_gpu(self) -> bool:
        return any("GPU" in name for name in self.used)


def prepare(device: str) -> None:
    """Set the environment TensorFlow reads at import time.

    `device: cpu` hides every GPU through `CUDA_VISIBLE_DEVICES`, because a `tf.device`
    scope does not keep cuDNN RNN kernels off a visible GPU.
    """
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # TensorFlow's C++ logs (CUDA probing, tf.data attribute notes) would drown the
    # progress on stderr; errors that matter surface as Python exceptions anyway.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if device == "cpu" and "tensorflow" not in sys.modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"


def start_tensorflow(device: str) -> float:
    """Import TensorFlow and Keras set up for `device`, start-up noise filtered; the seconds.

    Python's cyclic garbage collector is paused while they import, and the half a million
    objects they create are then frozen (`gc.freeze`): the collector would otherwise walk
    all of them again in every full collection, five times during the import (0.4 s) and
    again while the first training step is traced (0.1 to 0.2 s, in the first epoch). The
    import leaves about 3,700 objects of cyclic garbage, which stay. Measured here: the
    import took 2.4 to 2.6 s instead of 3.1 s, and a full collection afterwards 0 ms
    instead of 123 to 143 ms (README, Benchmarks).
    """
    import time

    prepare(device)
    started = time.perf_counter()
    if "tensorflow" not in sys.modules or "keras" not in sys.modules:
        with _native_noise_filtered(), _collector_paused():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    return time.perf_counter() - started


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside; what exists on leaving, frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def select_device(device: str, intra_op_threads: int | None = None,
                  inter_op_threads: int | None = None, *, all_gpus: bool = False,
                  cpu_devices: int = 1, streams: int = 1,
                  recurrent_loop: str = "keras", one_thread_per_op: bool = False) -> Devices:
    """Make exactly the requested devices visible to TensorFlow, and set its CPU threads.

    Args:
        device: `auto` (first GPU if any, else CPU), `cpu`, `gpu` (first GPU), `gpu:N` or
            `gpu:N,M,...`.
        intra_op_threads: Threads inside one operation; None lets TensorFlow choose.
        inter_op_threads: Operations at once; None lets TensorFlow choose.
        all_gpus: `auto` and `gpu` take every GPU, not the first (distribution: mirrored).
        cpu_devices: Split the CPU into this many logical devices when no GPU is used.
        streams: Batch streams (`seqtrain.streams`) if the CPU is used; they run one thread
            per operation unless `intra_op_threads` says otherwise. A GPU runs one.
        recurrent_loop: `seqtrain` or `keras` (`seqtrain.loops`) if the CPU is used; a GPU
            runs Keras's.
        one_thread_per_op: One thread per operation if the CPU is used, unless
            `intra_op_threads` says otherwise (`seqtrain.streams.one_thread_per_operation`).

    Returns:
        The device names TensorFlow will train on: one, or the replicas of a strategy.

    Raises:
        DeviceError: A GPU was requested that TensorFlow does not see.
    """
    start_tensorflow(device)
    import tensorflow as tf

    with _native_noise_filtered():
        gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu":
        chosen = []
    elif device == "auto":
        chosen = gpus if all_gpus else gpus[:1]
    else:
        indices = [int(i) for i in (device.partition(":")[2] or "0").split(",")]
        if device == "gpu" and all_gpus:
            indices = list(range(max(len(gpus), 1)))
        if max(indices) >= len(gpus):
            seen = ", ".join(g.name for g in gpus) or "none"
            raise DeviceError(
                f"device {device!r}: TensorFlow sees {len(gpus)} GPU(s) ({seen}). Use "
                "device: auto or cpu, or check the CUDA install with "
                "`python -c \"import tensorflow as tf; print(tf.config.list_physical_devices())\"`"
            )
        chosen = [gpus[i] for i in dict.fromkeys(indices)]
    if chosen:
        streams, recurrent_loop, one_thread_per_op = 1, "keras", False
    if (streams > 1 or one_thread_per_op) and intra_op_threads is None:
        intra_op_threads = 1  # products too small to split; streams: one thread each
    try:  # only before TensorFlow's runtime starts; a process that ran ops keeps its own
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:
        pass
    if not chosen and cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError:
            pass  # initialised earlier in this process: the split, if any, is fixed
    if gpus:
        try:
            tf.config.set_visible_devices(chosen, "GPU")
            for gpu in chosen:
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            # TensorFlow was initialised earlier in this process (tests, notebooks): the
            # visible set is fixed; record what it is rather than pretend.
            pass
    details = [tf.config.experimental.get_device_details(gpu) for gpu in chosen]
    used = [d.name for d in tf.config.list_logical_devices("GPU")] or [
        d.name for d in tf.config.list_logical_devices("CPU")[:cpu_devices]
    ]
    threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
               "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    return Devices(requested=device, used=used, details=details, threads=threads,
                   streams=streams, recurrent_loop=recurrent_loop)


# Lines TensorFlow's native code prints on every start of a CPU-only machine, before (or
# regardless of) TF_CPP_MIN_LOG_LEVEL: noise that would bury seqtrain's own messages.
_NATIVE_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc|cuInit|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"oneDNN custom operations are on|TF-TRT Warning|rebuild TensorFlow with the appropriate"
)


@contextmanager
def _native_noise_filtered() -> Iterator[None]:
    """Capture file descriptor 2 while TensorFlow starts; pass on all but known noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(True)
                    if not _NATIVE_NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def devices_for(config: ExperimentConfig) -> Devices:
    """Select the devices `config` asks for (see `select_device`) and check its precision.

    Raises:
        DeviceError: A GPU that is not there, or mixed_float16 without a GPU.
    """
    from seqtrain import loops

    runtime = config.runtime
    devices = select_device(config.device, runtime.intra_op_threads, runtime.inter_op_threads,
                            all_gpus=config.distribution == "mirrored",
                            cpu_devices=runtime.cpu_devices, **loops.settings(config))
    check_precision(config.precision, devices)
    return devices


def scope(distribution: str, devices: Devices) -> AbstractContextManager:
    """Where the model's variables are created, built, restored and trained.

    For distribution: mirrored, the scope of a `tf.distribute.MirroredStrategy` over
    `devices`; otherwise TensorFlow's default placement.
    """
    if distribution != "mirrored":
        return nullcontext()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices.used).scope()


def check_precision(precision: str, devices: Devices) -> None:
    """Refuse mixed_float16 without a GPU, where it only slows training down.

    Raises:
        DeviceError: mixed_float16 on a CPU.
    """
    if precision == "mixed_float16" and not devices.is_gpu:
        raise DeviceError(
            f"precision: mixed_float16 needs a GPU, and this run would train on "
            f"{', '.join(devices.used)}; CPUs have no fast float16 arithmetic. Use precision: "
            "float32 (or mixed_bfloat16 on CPUs with bfloat16 support), or a GPU device"
        )


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    import platform

    import keras
    import numpy
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
