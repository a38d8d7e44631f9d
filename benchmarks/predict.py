"""Prediction speed: `seqtrain predict`'s phases against plain Keras `model.predict`.

    python benchmarks/predict.py [--sequences 100000] [--repeats 5] [--out FILE]

The reference shape of `benchmarks/throughput.py` (`shifted_digit`, 50 steps of 10 one-hot
classes, LSTM 128, a per-step softmax) is trained for one short epoch (the weights do not
matter here), then in one process, alternating, `--repeats` times each:

  seqtrain   the model phase of `seqtrain predict` (`TrainedRun.predict_arrays`) on the
             arrays its reader prepared from an .npz of `--sequences` digit sequences
  keras      plain `model.predict(x, batch_size=1024)` of `keras.saving.load_model` on the
             same prepared arrays (seqtrain's default batch)
  keras_32   plain `model.predict(x)` as Keras's docs write it (batch_size 32), for context

Target: seqtrain's model phase at least 0.9x plain Keras's speed (keras / seqtrain time).
Reported apart: reading the input file (seqtrain's reader), writing the predictions as
.npz (all sequences) and as .csv (one row per step, timed on a 5,000-sequence slice), and
the whole command's start (`seqtrain predict` on a one-sequence file, a fresh process,
TensorFlow's import included). Results: `--out` (default benchmarks/results/predict.json)
and stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # a CPU benchmark, whatever the machine has

from throughput import REFERENCE as TRAINING  # noqa: E402  (the reference shape, once)

# The reference shape, trained for one short epoch: the weights do not matter here.
REFERENCE = {**TRAINING, "name": "predict-reference",
             "data": {**TRAINING["data"], "num_samples": 2048},
             "train": {**TRAINING["train"], "epochs": 1}}
CSV_SLICE = 5000


def train_reference(folder: Path) -> Path:
    """A run of the reference shape, trained briefly through `seqtrain run`."""
    import yaml

    config = folder / "reference.yaml"
    config.write_text(yaml.safe_dump(REFERENCE))
    run = folder / "run"
    subprocess.run([sys.executable, "-m", "seqtrain", "run", str(config), "--run-dir", str(run),
                    "--quiet"], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return run


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "predict.json")
    args = parser.parse_args()

    import numpy as np

    folder = Path(tempfile.mkdtemp(prefix="seqtrain-predict-bench-"))
    run = train_reference(folder)
    digits = np.random.default_rng(0).integers(0, 10, (args.sequences, 50))
    np.savez(folder / "inputs.npz", x=digits)
    np.savez(folder / "one.npz", x=digits[:1])

    import keras

    from seqtrain.predictions import Predictions
    from seqtrain.trained import PREDICT_BATCH_SIZE, TrainedRun

    trained = TrainedRun(run, device="cpu")
    read_seconds, part = timed(lambda: trained.prepare(folder / "inputs.npz"))
    plain = keras.saving.load_model(trained.checkpoint_path, safe_mode=True)
    trained.predict_arrays(part.x[:PREDICT_BATCH_SIZE])  # warm both: tracing is not timed
    plain.predict(part.x[:PREDICT_BATCH_SIZE], batch_size=PREDICT_BATCH_SIZE, verbose=0)
    plain.predict(part.x[:64], verbose=0)
    times: dict[str, list[float]] = {"seqtrain": [], "keras": [], "keras_32": []}
    variants = {
        "seqtrain": lambda: trained.predict_arrays(part.x),
        "keras": lambda: plain.predict(part.x, batch_size=PREDICT_BATCH_SIZE, verbose=0),
        "keras_32": lambda: plain.predict(part.x, verbose=0),
    }
    outputs = None
    for repeat in range(args.repeats):
        order = list(variants)[repeat % 3:] + list(variants)[:repeat % 3]  # rotating order
        for name in order:
            seconds, result = timed(variants[name])
            times[name].append(seconds)
            if name == "seqtrain":
                outputs = result
    predictions = Predictions(trained.preprocessing, outputs, part)
    npz_seconds, _ = timed(lambda: predictions.write(folder / "out.npz"))
    sliced = min(CSV_SLICE, args.sequences)
    head = Predictions(trained.preprocessing, outputs[:sliced], part.take(slice(sliced)))
    csv_seconds, _ = timed(lambda: head.write_csv(io.StringIO()))

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtrain", "predict", str(run),
                    str(folder / "one.npz"), "--device", "cpu", "--quiet"], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    command_seconds = time.perf_counter() - started

    median = {name: statistics.median(values) for name, values in times.items()}
    results = {
        "sequences": args.sequences, "repeats": args.repeats,
        "batch_size": PREDICT_BATCH_SIZE,
        "model_seconds": median,
        "sequences_per_second": {k: args.sequences / v for k, v in median.items()},
        "ratio_to_keras": median["keras"] / median["seqtrain"],
        "ratio_to_keras_32": median["keras_32"] / median["seqtrain"],
        "read_seconds": read_seconds,
        "write_npz_seconds": npz_seconds,
        "write_csv_seconds_per_1000_sequences": csv_seconds / sliced * 1000,
        "command_one_sequence_seconds": command_seconds,
        "every_time": times,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.sequences:,} sequences, batch {PREDICT_BATCH_SIZE}, medians of "
          f"{args.repeats}:")
    for name in variants:
        print(f"  {name:<9} {median[name]:7.2f} s  {args.sequences / median[name]:9,.0f} seq/s")
    print(f"  seqtrain / keras speed: {results['ratio_to_keras']:.3f} (target >= 0.9); "
          f"/ keras_32: {results['ratio_to_keras_32']:.2f}")
    print(f"  read the .npz: {read_seconds:.2f} s; write .npz: {npz_seconds:.2f} s; write .csv: "
          f"{results['write_csv_seconds_per_1000_sequences']:.2f} s per 1,000 sequences "
          f"({50} rows each)")
    print(f"  `seqtrain predict` of one sequence, whole command: {command_seconds:.2f} s")


if __name__ == "__main__":
    main()
