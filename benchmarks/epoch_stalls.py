"""Epoch stalls from tf.data autotuning: plain Keras epochs with it on and off.

    python benchmarks/epoch_stalls.py [--epochs 30] [--repeats 2] [--units 128]

Trains the throughput benchmark's reference model (LSTM, 50 steps of 10 one-hot features,
per-step softmax, batch 128, 3,276 sequences) with plain Keras from a tf.data pipeline
prefetched with autotuning on (`prefetch(AUTOTUNE)`, tf.data's default) and off (a fixed
buffer of 2, `options.autotune.enabled = False`, as seqtrain's pipelines run), in
alternating fits in one process. For every epoch after the first (tracing) it records
the wall seconds, the process's CPU seconds and, on Linux, the machine's idle CPU seconds.
An epoch is a stall when it takes over 1.5x the median epoch with autotuning off.

What it showed here (docs/performance.md): with autotuning on, a third of the epochs took
twice as long with the same CPU time while the process sat idle, waiting in the previous
epoch's iterator teardown for the autotuning thread's timed sleep; with it off, none.
Results: benchmarks/results/epoch_stalls.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"


def idle_seconds() -> float | None:
    """Idle CPU seconds of the whole machine since boot (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")  # idle + iowait


def epoch_meter():
    """A Keras callback recording wall, CPU and idle seconds of every epoch."""
    import keras

    class EpochMeter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = (time.perf_counter(), time.process_time(), idle_seconds())

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu, idle = self._start
            now_idle = idle_seconds()
            self.epochs.append({
                "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                "idle_cpu_seconds": None if idle is None else now_idle - idle})

    return EpochMeter()


def fit(x, y, units: int, epochs: int, autotune: bool) -> list[dict]:
    """Epochs 2.. of a plain Keras fit fed by tf.data with autotuning on or off."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(128)
    if autotune:
        data = data.prefetch(tf.data.AUTOTUNE)
    else:
        options = tf.data.Options()
        options.autotune.enabled = False
        data = data.prefetch(2).with_options(options)
    model = keras.Sequential([keras.Input(x.shape[1:]),
                              keras.layers.LSTM(units, return_sequences=True),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=16)
    meter = epoch_meter()
    model.fit(data, epochs=epochs, verbose=0, callbacks=[meter], shuffle=False)
    return meter.epochs[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--samples", type=int, default=3276)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "epoch_stalls.json")
    args = parser.parse_args()
    import numpy as np

    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (args.samples, 50))
    x, y = np.eye(10, dtype="float32")[digits], np.roll(digits, 3, axis=1)
    epochs: dict[str, list[dict]] = {"autotune_on": [], "autotune_off": []}
    for _ in range(args.repeats):
        for name in epochs:
            epochs[name] += fit(x, y, args.units, args.epochs, name == "autotune_on")
    typical = statistics.median(e["seconds"] for e in epochs["autotune_off"])
    report = {"epochs_per_fit": args.epochs, "repeats": args.repeats, "units": args.units,
              "stall_threshold_seconds": 1.5 * typical, "modes": {}}
    for name, rows in epochs.items():
        stalls = [e for e in rows if e["seconds"] > 1.5 * typical]
        idle = [e["idle_cpu_seconds"] for e in stalls if e["idle_cpu_seconds"] is not None]
        report["modes"][name] = {
            "epochs": len(rows), "stalls": len(stalls),
            "median_seconds": statistics.median(e["seconds"] for e in rows),
            "median_cpu_seconds": statistics.median(e["cpu_seconds"] for e in rows),
            "median_idle_cpu_seconds_in_stalls": statistics.median(idle) if idle else None,
            "epochs_detail": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'tf.data':13} {'epochs':>6} {'stalls':>6} {'median s':>9} {'median cpu s':>12} "
          f"{'idle cpu s in a stall':>21}")
    for name, mode in report["modes"].items():
        idle = mode["median_idle_cpu_seconds_in_stalls"]
        print(f"{name:13} {mode['epochs']:6d} {mode['stalls']:6d} {mode['median_seconds']:9.2f} "
              f"{mode['median_cpu_seconds']:12.2f} {'-' if idle is None else f'{idle:.2f}':>21}")
    print(f"a stall: an epoch over {1.5 * typical:.2f} s (1.5x the median with autotuning off)")


if __name__ == "__main__":
    main()
