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

from seqtrain.errors import DeviceError


@dataclass(frozen=True)
class Devices:
    """The devices a run trains on, as TensorFlow names them."""

    requested: str
    used: list[str]
    details: list[dict] = field(default_factory=list)
    threads: dict = field(default_factory=dict)

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


def start_tensorflow(device: str, freeze_imports: bool = False) -> float:
    """Import TensorFlow and Keras set up for `device`, start-up noise filtered; the seconds.

    With `freeze_imports` (part of the CPU speed layer, `seqtrain.tuning`), Python's cyclic
    garbage collector is paused while they import, and the half a million objects they
    create are then frozen (`gc.freeze`): the collector would otherwise walk all of them
    again in every full collection, several times during the import and again while the
    first training step is traced. The import leaves some cyclic garbage, which stays.
    """
    import time

    prepare(device)
    started = time.perf_counter()
    if "tensorflow" not in sys.modules or "keras" not in sys.modules:
        paused = _collector_paused() if freeze_imports else nullcontext()
        with _native_noise_filtered(), paused:
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
                  cpu_devices: int = 1, cpu_intra_op_threads: int | None = None,
                  freeze_imports: bool = False) -> Devices:
    """Make exactly the requested devices visible to TensorFlow, and set its CPU threads.

    Args:
        device: `auto` (first GPU if any, else CPU), `cpu`, `gpu` (first GPU), `gpu:N` or
            `gpu:N,M,...`.
        intra_op_threads: Threads inside one operation; None lets TensorFlow choose.
        inter_op_threads: Operations at once; None lets TensorFlow choose.
        all_gpus: `auto` and `gpu` take every GPU, not the first (distribution: mirrored).
        cpu_devices: Split the CPU into this many logical devices when no GPU is used.
        cpu_intra_op_threads: Threads inside one operation if the CPU is used and
            `intra_op_threads` is None (the speed layer's choice, `seqtrain.tuning`).
        freeze_imports: Pause and freeze the garbage collector while TensorFlow imports
            (`start_tensorflow`).

    Returns:
        The device names TensorFlow will train on: one, or the replicas of a strategy.

    Raises:
        DeviceError: A GPU was requested that TensorFlow does not see.
    """
    start_tensorflow(device, freeze_imports)
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
    if intra_op_threads is None and not chosen:
        intra_op_threads = cpu_intra_op_threads
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
    return Devices(requested=device, used=used, details=details, threads=threads)


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
