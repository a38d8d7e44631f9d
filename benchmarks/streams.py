"""Batch streams against none: seqtrain's training speed per model shape.

    python benchmarks/streams.py [--repeats 2] [--epochs 5] [--samples 4096]
                                 [--shapes lstm:64:64,lstm:128:128,...]

For each shape (cell:units:batch) of the reference task (`throughput.py`: 50 steps of 10
one-hot features, per-step softmax), seqtrain's own training path (A) runs with
`runtime.streams: 1` and with one stream per core, each run a fresh process (TensorFlow's
threads are fixed per process), alternating, `--repeats` times. Reported: the per-step
recurrent product (batch x units x gates * units multiply-adds, as `seqtrain.tuning.resolve`
counts it), what `auto` picks, sequences per second (medians) and the speed-up. Results:
benchmarks/results/streams.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (sets the environment up, puts the repo on the path)

from seqtrain import tuning  # noqa: E402

SHAPES = ("lstm:64:64,lstm:64:128,lstm:128:64,lstm:128:128,gru:128:128,lstm:192:128,"
          "gru:256:128,lstm:256:128")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--out", type=Path, default=throughput.ROOT / "benchmarks" / "results" /
                        "streams.json")
    args = parser.parse_args()
    cores = tuning.usable_cores()
    rows = []
    for shape in args.shapes.split(","):
        cell, units, batch = shape.split(":")
        sizes = {"model.units": int(units), "train.batch_size": int(batch)}
        config = throughput.reference_config(cell, args.samples, args.epochs, **sizes)
        rates: dict[int, list[float]] = {1: [], cores: []}
        for _ in range(args.repeats):
            for count in rates:
                run = throughput.in_child("A", cell, args, {**sizes, "runtime.streams": count})
                rates[count].append(run["rate"])
        whole, split = (statistics.median(rates[count]) for count in (1, cores))
        rows.append({"cell": cell, "units": int(units), "batch_size": int(batch),
                     "step_product": tuning.step_product(config),
                     "auto": tuning.resolve(config, cores).streams, "streams": cores,
                     "sequences_per_second": {"1": whole, str(cores): split},
                     "repeats": {str(k): v for k, v in rates.items()}, "speed_up": split / whole})
        print(f"{shape}: {whole:.0f} against {split:.0f} seq/s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cores": cores, "epochs": args.epochs,
                                    "shapes": rows}, indent=2) + "\n")
    print(f"{'shape':14} {'product':>8} {'auto':>4} {'1 stream':>9} "
          f"{f'{cores} streams':>10} {'speed-up':>8}")
    for row in rows:
        rate = row["sequences_per_second"]
        shape = f"{row['cell']}:{row['units']}:{row['batch_size']}"
        print(f"{shape:14} {row['step_product'] / 2**20:>6.1f}Mi {row['auto']:>4} "
              f"{rate['1']:>9.0f} {rate[str(cores)]:>10.0f} {row['speed_up']:>7.2f}x")


if __name__ == "__main__":
    main()
