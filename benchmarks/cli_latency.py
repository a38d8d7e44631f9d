"""CLI latency: `--help`, `validate` and `ls` over 500 runs, against `import tensorflow`.

    python benchmarks/cli_latency.py [--runs 500] [--repeats 5]

Every command runs as a fresh process, interleaved with the others, and the median of the
repeats is reported, with its ratio to the time of `python -c "import tensorflow"` measured
in the same run. Targets: `ls` of 500 runs under 1 s, and each command under 10% of the
TensorFlow import. Results go to benchmarks/results/cli_latency.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqtrain.config import dump_config, load_config  # noqa: E402


def make_runs(folder: Path, count: int) -> None:
    """`count` run directories with the files `ls` reads, shaped like real ones."""
    config = load_config(ROOT / "configs" / "shifted_digit_lstm.yaml")
    for index in range(count):
        run = folder / f"shifted-digit-lstm.units={index}-20261126T000000Z-{index:04x}"
        (run / "checkpoints").mkdir(parents=True)
        resolved = config.model_copy(update={"model": config.model.model_copy(
            update={"units": 8 + index % 64, "cell": ("lstm", "gru", "simple_rnn")[index % 3]})})
        (run / "config.yaml").write_text(dump_config(resolved))
        metrics = {"loss": 0.01 * index, "accuracy": 0.99, "val_loss": 0.02, "val_accuracy": 0.98}
        (run / "summary.json").write_text(json.dumps({
            "status": "completed", "name": "shifted-digit-lstm", "run_dir": str(run),
            "epochs": 10, "epochs_run": 10, "best_epoch": 9, "best": metrics, "final": metrics,
            "test": {"loss": 0.02, "accuracy": 0.98}, "num_params": 19850,
            "wall_seconds": 15.2, "train_seconds": 10.1, "samples_per_second": 7300.0,
            "devices": ["/device:CPU:0"], "error": None,
            "config": resolved.model_dump(mode="json")}, indent=2))
        (run / "run.lock").write_text("pid 1 on host\n")


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "seqtrain"]
    with tempfile.TemporaryDirectory() as tmp:
        make_runs(Path(tmp), args.runs)
        commands = {
            "import tensorflow": [sys.executable, "-c", "import tensorflow"],
            "seqtrain --help": [*cli, "--help"],
            "seqtrain validate": [*cli, "validate", "configs/shifted_digit_lstm.yaml"],
            f"seqtrain ls ({args.runs} runs)": [*cli, "ls", tmp],
        }
        for command in commands.values():  # warm the file cache and .pyc files
            seconds(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # interleaved: drift hits every command alike
            for name, command in commands.items():
                times[name].append(seconds(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians["import tensorflow"]
    results = {name: {"median_seconds": round(m, 4), "ratio_to_tensorflow_import":
                      round(m / baseline, 4), "repeats": times[name]}
               for name, m in medians.items()}
    out = ROOT / "benchmarks" / "results" / "cli_latency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{'command':32} {'median s':>9} {'/ import tf':>12}")
    for name, result in results.items():
        print(f"{name:32} {result['median_seconds']:9.3f} "
              f"{result['ratio_to_tensorflow_import']:12.3f}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
