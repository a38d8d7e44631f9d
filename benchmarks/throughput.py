"""Training throughput: seqtrain against plain Keras, PyTorch and the matmul limit.

    python benchmarks/throughput.py [--repeats 6] [--epochs 4] [--samples 4096]
                                    [--cells lstm,gru] [--levers] [--time-to-accuracy]

The reference task is per-step 10-class classification of sequences of 50 one-hot
vectors of 10 features (`shifted_digit`, length 50, 10 classes), a 128-unit LSTM or GRU
and a per-step softmax, batch 128, trained on the same arrays by:

  A       seqtrain's own training path (`run_experiment`: its tf.data pipeline, callbacks,
          checkpoints) with seqtrain's defaults;
  B       plain Keras as its docs write it: `model.fit(x, y, batch_size=128)`, defaults;
  B_same  plain Keras with seqtrain's settings (steps_per_execution, weighted loss and
          metric, sample weights, a tf.data input with autotuning off and 2 batches
          prefetched, its recurrent step, batch streams and threads): the overhead of the
          tool itself is A / B_same;
  B_keep  B_same plus the checkpointing A does, with Keras's own callbacks
          (`ModelCheckpoint(save_best_only=True)`, `BackupAndRestore`, `CSVLogger`): what
          a Keras script that keeps its work as seqtrain does pays (run in one process
          with A, below);
  C       PyTorch `nn.LSTM` / `nn.GRU` with the same shapes and optimizer, one thread per
          core, when torch is installed (it is not a dependency);
  D       float32 matmul GFLOP/s at the recurrent step's shape, batch x (features + units)
          by (features + units) x gates * units, against which A's achieved GFLOP/s
          (FLOPs counted as `seqtrain plan` does) is compared.

Every variant trains `--epochs` epochs on the same data with validation; the first epoch
(tracing) is left out, and a variant's speed is training sequences per second over the
rest, wall time, callbacks and checkpoint writes included. Each run of a variant is a fresh
process, because TensorFlow's thread settings are fixed per process: A and B_same run with
seqtrain's (its recurrent step, batch streams, one thread per operation), B with
TensorFlow's defaults and Keras's loop, C with one torch thread per core. The variants run
interleaved, `--repeats` times; medians are reported. Op determinism, which seqtrain turns
on by default, is on in B_same too (seeded as seqtrain seeds), and off in B, as in Keras
(`--levers` times A without it). A and B_same run once more each per repeat, with B_keep,
one after the other in one process (`PAIRS`, the order rotating by repeat), for an
A/B_same free of the drift between processes.
Results: benchmarks/results/throughput.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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

from seqtrain.config import ExperimentConfig, validate_config  # noqa: E402

REFERENCE = {
    "name": "throughput",
    "seed": 1,
    "device": "cpu",
    "data": {"task": "shifted_digit", "sequence_length": 50, "num_classes": 10, "shift": 3,
             "num_samples": 4096, "split": {"train": 0.8, "val": 0.1, "test": 0.1}},
    "model": {"cell": "lstm", "units": 128},
    "train": {"batch_size": 128, "epochs": 4},
}


def reference_config(cell: str, samples: int, epochs: int, **changes) -> ExperimentConfig:
    """The reference experiment for `cell`, with `changes` as dotted paths."""
    raw = json.loads(json.dumps(REFERENCE))
    raw["model"]["cell"] = cell
    raw["data"]["num_samples"] = samples
    raw["train"]["epochs"] = epochs
    for path, value in changes.items():
        section, key = path.split(".") if "." in path else (None, path)
        (raw.setdefault(section, {}) if section else raw)[key] = value
    return validate_config(raw, {})


# --- the variants ------------------------------------------------------------------------

PHASES = ("train_ms", "validation_ms", "epoch_end_ms")  # of an epoch, as EpochPhases splits it


class EpochPhases:
    """When each epoch began, validated and ended: a variant's speed, and where it went."""

    def __init__(self):
        self.marks: list[tuple[str, float]] = []

    def mark(self, tag: str) -> None:
        self.marks.append((tag, time.perf_counter()))

    def report(self, samples: int) -> dict:
        """Sequences per second, and each phase's median milliseconds (`PHASES`).

        Over the epochs after the first, which traces the graph.
        """
        epochs, current = [], {}
        for tag, at in self.marks:
            current[tag] = at
            if tag == "end":
                epochs.append(current)
                current = {}
        steady = epochs[1:]

        def ms(first: str, then: str) -> float:
            return statistics.median((epoch[then] - epoch[first]) * 1000 for epoch in steady)

        rate = samples * len(steady) / (steady[-1]["end"] - steady[0]["begin"])
        return {"rate": rate, **dict(zip(PHASES, (ms("begin", "test_begin"),
                                                   ms("test_begin", "test_end"),
                                                   ms("test_end", "end")), strict=True))}


def run_seqtrain(config: ExperimentConfig, folder: Path) -> dict:
    """A: `seqtrain run` in this process, timed as B is (`EpochPhases`).

    Each epoch from its first callback with a clock (`EpochLog`) to the end of its last
    (`ResumableState`), its checkpoint writes included.
    """
    from seqtrain import callbacks
    from seqtrain.experiment import run_experiment

    phases = EpochPhases()
    hooks = [(callbacks.EpochLog, "on_epoch_begin", "begin"),  # its first callback with a clock
             (callbacks.EpochLog, "on_test_begin", "test_begin"),
             (callbacks.EpochLog, "on_test_end", "test_end"),
             (callbacks.ResumableState, "on_epoch_end", "end")]  # its last: after the saves
    own = [cls.__dict__.get(name) for cls, name, _ in hooks]  # None: inherited from Keras
    for cls, name, tag in hooks:
        setattr(cls, name, timed(getattr(cls, name), tag, phases))
    try:
        _, summary = run_experiment(config, exact_dir=folder / f"a-{time.time_ns()}",
                                    display="quiet")
    finally:
        for (cls, name, _), method in zip(hooks, own, strict=True):
            if method is None:
                delattr(cls, name)
            else:
                setattr(cls, name, method)
    return phases.report(summary["num_train_samples"])


def timed(method, tag: str, phases: EpochPhases):
    """`method` of a callback, marking `tag` in `phases` before it begins ("end": after)."""
    def hooked(self, *args, **kwargs):
        if tag != "end":
            phases.mark(tag)
        method(self, *args, **kwargs)
        if tag == "end":
            phases.mark(tag)

    return hooked


def epoch_clock(phases: EpochPhases):
    """A Keras callback marking `phases` for plain Keras."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            phases.mark("begin")

        def on_test_begin(self, logs=None):
            phases.mark("test_begin")

        def on_test_end(self, logs=None):
            phases.mark("test_end")

        def on_epoch_end(self, epoch, logs=None):
            phases.mark("end")

    return EpochClock()


def run_keras(data, cell: str, epochs: int, same_as: ExperimentConfig | None = None,
              in_force=None, keep: Path | None = None) -> dict:
    """B (`same_as` None): the Keras docs' way. B_same: seqtrain's settings, plain Keras.

    B_same runs the recurrent layer as seqtrain's speed layer sets it up (`in_force`: the
    `seqtrain.tuning.Tuning` in force: its step, batch streams): what is left between A and
    B_same is the tool's own work. With `keep` (a folder), B_keep: B_same that also saves
    what A saves every epoch, with Keras's own callbacks (the best model, a backup to
    resume from, the epoch log).
    """
    import keras

    train, val, spec = data.train, data.val, data.spec
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    model = keras.Sequential([keras.Input(shape=train.x.shape[1:]),
                              layer(128, return_sequences=True),
                              keras.layers.Dense(spec.output_units, activation="softmax")])
    phases = EpochPhases()
    clock = epoch_clock(phases)
    if same_as is None:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(train.x, train.y, batch_size=128, epochs=epochs, verbose=0,
                  validation_data=(val.x, val.y), callbacks=[clock])
    else:
        import tensorflow as tf

        def batches(split, shuffle: bool):  # tf.data as its guide writes it, autotune off
            data = tf.data.Dataset.from_tensor_slices(split.arrays)
            data = (data.shuffle(len(split), seed=0) if shuffle else data).batch(128)
            options = tf.data.Options()
            options.autotune.enabled = False
            return data.prefetch(2).with_options(options)

        from seqtrain import tuning

        tuning.install(model, in_force)
        model.compile(
            optimizer=keras.optimizers.Adam(same_as.train.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight"),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            steps_per_execution=same_as.train.steps_per_execution)
        saves = [] if keep is None else [
            keras.callbacks.ModelCheckpoint(keep / "best.keras", monitor="val_loss",
                                            mode="min", save_best_only=True),
            keras.callbacks.BackupAndRestore(str(keep / "backup")),
            keras.callbacks.CSVLogger(str(keep / "metrics.csv"))]
        model.fit(batches(train, shuffle=True), epochs=epochs, verbose=0,
                  callbacks=[*saves, clock],  # the clock last: epoch ends after the saves
                  shuffle=False, validation_data=batches(val, shuffle=False))
    return phases.report(len(train))


def run_torch(data, cell: str, epochs: int, threads: int) -> dict | None:
    """C: PyTorch with the same shapes, Adam, cross-entropy and thread count."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train, val = data.train, data.val
    features, classes = train.x.shape[-1], data.spec.output_units
    recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](features, 128,
                                                                  batch_first=True)
    head = torch.nn.Linear(128, classes)
    parameters = list(recurrent.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y.astype("int64"))
    xv, yv = torch.from_numpy(val.x), torch.from_numpy(val.y.astype("int64"))
    phases = EpochPhases()
    for _ in range(epochs):
        phases.mark("begin")
        order = torch.randperm(len(x))
        for begin in range(0, len(x), 128):
            index = order[begin:begin + 128]
            optimizer.zero_grad()
            out, _ = recurrent(x[index])
            loss = loss_fn(head(out).reshape(-1, classes), y[index].reshape(-1))
            loss.backward()
            optimizer.step()
        phases.mark("test_begin")
        with torch.no_grad():
            for begin in range(0, len(xv), 128):
                out, _ = recurrent(xv[begin:begin + 128])
                loss_fn(head(out).reshape(-1, classes), yv[begin:begin + 128].reshape(-1))
        phases.mark("test_end")
        phases.mark("end")
    return phases.report(len(x))


def matmul_gflops(batch: int, inputs: int, outputs: int, repeats: int = 400) -> float:
    """D: float32 GFLOP/s of TensorFlow's matmul at one recurrent step's shape."""
    import tensorflow as tf

    a = tf.random.normal((batch, inputs))
    b = tf.random.normal((inputs, outputs))

    @tf.function
    def many(a, b):
        total = tf.zeros((batch, outputs))
        for _ in tf.range(repeats):
            total += tf.matmul(a, b)
        return total

    many(a, b).numpy()  # trace and warm up
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        many(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * batch * inputs * outputs * repeats / best / 1e9


# --- the report --------------------------------------------------------------------------

def median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


VARIANTS = ("A", "B", "B_same", "C")
# A, B_same and B_keep again, one after the other in one process, in an order that rotates
# by repeat (each takes each place once in three repeats: a run's place in the process
# favours none of them): they share every process-wide setting, so their ratios measure
# the tool's overhead without the drift between processes.
PAIRS = ("A+B_same+B_keep", "B_same+B_keep+A", "B_keep+A+B_same")


def run_variant(variant: str, cell: str, samples: int, epochs: int,
                changes: dict | None = None) -> dict:
    """One run of `variant` (or a pair) in this fresh process: speed, phases and settings.

    A and B_same set TensorFlow up as seqtrain does for the reference config (`changes`
    applied): device, threads, batch streams, recurrent step, seeds and op determinism. B
    and D keep TensorFlow's defaults, C is torch.
    """
    from seqtrain import runtime, tuning
    from seqtrain.data import build_dataset

    config = reference_config(cell, samples, epochs, **(changes or {}))
    if variant in ("A", "B_same", *PAIRS):
        devices, in_force = tuning.select(config, tuning.choose(config))
        settings = {"threads": devices.threads, "streams": in_force.streams,
                    "recurrent_loop": in_force.recurrent_loop}
    elif variant in ("B", "D"):
        settings = {"threads": runtime.select_device("cpu").threads, "streams": 1}
    else:
        settings = {"torch_threads": tuning.usable_cores()}

    def run(name: str) -> dict | None:
        if name == "A":  # builds its own data, as `seqtrain run` does
            with tempfile.TemporaryDirectory() as scratch:
                return run_seqtrain(config, Path(scratch))
        data = build_dataset(config.data, config.seed, False)
        if name == "C":
            return run_torch(data, cell, epochs, settings["torch_threads"])
        if name == "B":
            return run_keras(data, cell, epochs)
        runtime.seed_everything(config.seed, config.runtime.deterministic)
        if name == "B_keep":
            with tempfile.TemporaryDirectory() as scratch:
                return run_keras(data, cell, epochs, config, in_force, keep=Path(scratch))
        return run_keras(data, cell, epochs, config, in_force)

    if variant in PAIRS:
        return {"pair": {name: run(name) for name in variant.split("+")}, **settings}
    if variant == "D":
        from seqtrain.models import GATES

        features = build_dataset(config.data, config.seed, False).train.x.shape[-1]
        return {"gflops": matmul_gflops(128, features + 128, GATES[cell] * 128), **settings}
    return {**(run(variant) or {"rate": None}), **settings}


def in_child(variant: str, cell: str, args, changes: dict | None = None) -> dict:
    """`run_variant` in a fresh process (`--variant`): its result."""
    out = subprocess.run([sys.executable, __file__, "--variant", variant, "--cells", cell,
                          "--samples", str(args.samples), "--epochs", str(args.epochs),
                          "--changes", json.dumps(changes or {})],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(args) -> dict:
    from seqtrain.data import build_dataset
    from seqtrain.plan import make_plan

    results = {}
    for cell in args.cells:
        config = reference_config(cell, args.samples, args.epochs)
        runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
        limits: list[dict] = []
        pairs: list[dict] = []
        for repeat in range(args.repeats):  # interleaved: drift hits every variant
            for variant in VARIANTS:
                runs[variant].append(in_child(variant, cell, args))
            pairs.append(in_child(PAIRS[repeat % len(PAIRS)], cell, args)["pair"])
            limits.append(in_child("D", cell, args))
            print(f"{cell} repeat {repeat + 1}: " + ", ".join(
                f"{k} {v[-1]['rate']:.0f}" for k, v in runs.items() if v[-1]["rate"])
                + f", D {limits[-1]['gflops']:.1f} GFLOP/s, in one process: " + ", ".join(
                    f"{k} {v['rate']:.0f}" for k, v in pairs[-1].items()), file=sys.stderr)
        limit = {**limits[0], "gflops": median([run["gflops"] for run in limits])}
        data = build_dataset(config.data, config.seed, False)
        plan = make_plan(config, data, ["/device:CPU:0"], 0)
        rates = {variant: [run["rate"] for run in v] for variant, v in runs.items()}
        a, b, b_same, c = (median(rates[k]) for k in VARIANTS)
        achieved = plan["flops"]["train_step"] / config.train.batch_size * a / 1e9
        results[cell] = {
            "sequences_per_second": {"A": a, "B": b, "B_same": b_same, "C": c},
            "repeats": rates, "D_repeats": [run["gflops"] for run in limits],
            "A/B": a / b, "A/B_same": a / b_same, "A/C": a / c if c else None,
            "A/B_same_paired": median([p["A"]["rate"] / p["B_same"]["rate"] for p in pairs]),
            "A/B_keep_paired": median([p["A"]["rate"] / p["B_keep"]["rate"] for p in pairs]),
            "pairs": pairs,
            "epoch_phases_ms": {
                **{variant: {phase: median([run[phase] for run in v]) for phase in PHASES}
                   for variant, v in runs.items() if v[0]["rate"]},
                **{f"{variant} (in one process)": {
                    phase: median([p[variant][phase] for p in pairs]) for phase in PHASES}
                   for variant in pairs[0]}},
            "D_matmul_gflops": limit["gflops"], "A_gflops": achieved,
            "A/D": achieved / limit["gflops"],
            "settings": {"batch_size": 128, "steps_per_execution":
                         config.train.steps_per_execution, "epochs": args.epochs,
                         "train_sequences": len(data.train),
                         **{variant: {k: v for k, v in runs[variant][0].items()
                                      if k not in ("rate", *PHASES)}
                            for variant in VARIANTS},
                         "D": {k: v for k, v in limit.items() if k != "gflops"}},
        }
    return results


def time_to_accuracy() -> dict:
    """`configs/shifted_digit_lstm.yaml` as a user runs it: seconds and epochs to 0.99."""
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "seqtrain", "run",
                        str(ROOT / "configs" / "shifted_digit_lstm.yaml"), "--run-dir",
                        f"{scratch}/run", "--quiet"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        from seqtrain.callbacks import EpochLog

        rows = EpochLog.read(Path(scratch) / "run" / "metrics.csv", 10**6)
    elapsed = 0.0
    for row in rows:
        elapsed += row["epoch_seconds"]
        if row["val_accuracy"] >= 0.99:
            return {"epochs": int(row["epoch"]), "train_seconds": round(elapsed, 2),
                    "process_seconds": round(wall, 2), "peak_rss_mib": round(peak_mib)}
    return {"epochs": None, "process_seconds": round(wall, 2), "peak_rss_mib": round(peak_mib)}


def dataset_copies(samples: int) -> dict:
    """Peak memory while building the reference data, in units of the data it keeps."""
    import tracemalloc

    from seqtrain.data import build_dataset

    config = reference_config("lstm", samples, 1)
    tracemalloc.start()
    data = build_dataset(config.data, config.seed, False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = sum(a.nbytes for split in (data.train, data.val, data.test)
               for a in split.arrays)
    return {"dataset_mib": round(kept / 2**20, 1), "peak_mib": round(peak / 2**20, 1),
            "peak_over_dataset": round(peak / kept, 2)}


LEVERS = {  # A with one setting changed, each in a fresh process (determinism is global)
    "defaults": {},
    "steps_per_execution=1": {"train.steps_per_execution": 1},
    "steps_per_execution=32": {"train.steps_per_execution": 32},
    "unroll=true": {"model.unroll": True},
    "deterministic=false": {"runtime.deterministic": False},
    "jit_compile=true": {"runtime.deterministic": False, "train.jit_compile": True},
    "streams=1": {"runtime.streams": 1},  # one thread per operation: 8 Mi is below 24 Mi
    "streams=1,intra_op_threads=2": {"runtime.streams": 1, "runtime.intra_op_threads": 2},
    "streams=2,intra_op_threads=2": {"runtime.streams": 2, "runtime.intra_op_threads": 2},
    "recurrent_loop=keras": {"runtime.recurrent_loop": "keras"},
}


def levers(args) -> dict:
    """A's speed with each lever, median of `--repeats` fresh processes per lever."""
    rates: dict[str, list[float]] = {name: [] for name in LEVERS}
    for _ in range(args.repeats):
        for name, changes in LEVERS.items():
            rates[name].append(in_child("A", "lstm", args, changes)["rate"])
    base = statistics.median(rates["defaults"])
    return {name: {"sequences_per_second": statistics.median(v),
                   "vs_defaults": statistics.median(v) / base} for name, v in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6,
                        help="Repeats of each variant; a multiple of 3 gives every variant "
                        "each place in the in-process runs equally often.")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--levers", action="store_true", help="Also time A per lever.")
    parser.add_argument("--time-to-accuracy", action="store_true",
                        help="Also train configs/shifted_digit_lstm.yaml to 0.99.")
    parser.add_argument("--variant", choices=(*VARIANTS, *PAIRS, "D"), help=argparse.SUPPRESS)
    parser.add_argument("--changes", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "throughput.json")
    args = parser.parse_args()
    args.cells = args.cells.split(",")
    if args.variant:  # a child of `throughput` or `levers`
        print(json.dumps(run_variant(args.variant, args.cells[0], args.samples, args.epochs,
                                     json.loads(args.changes))))
        return

    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "throughput": throughput(args), "dataset_memory": dataset_copies(args.samples)}
    from seqtrain.runtime import versions

    report["machine"].update(versions())
    if args.levers:
        report["levers"] = levers(args)
    if args.time_to_accuracy:
        report["time_to_accuracy"] = time_to_accuracy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def print_table(report: dict) -> None:
    print(f"{'cell':5} {'A seq/s':>9} {'B seq/s':>9} {'B_same':>9} {'C torch':>9} "
          f"{'A/B':>6} {'A/B_same':>8} {'A/C':>6} {'A GFLOP/s':>9} {'D GFLOP/s':>9} {'A/D':>6}")
    for cell, r in report["throughput"].items():
        s = r["sequences_per_second"]

        def cell_text(value, digits=0):
            return "-" if value is None else f"{value:.{digits}f}"

        print(f"{cell:5} {cell_text(s['A']):>9} {cell_text(s['B']):>9} "
              f"{cell_text(s['B_same']):>9} {cell_text(s['C']):>9} {r['A/B']:>6.2f} "
              f"{r['A/B_same']:>8.2f} {cell_text(r['A/C'], 2):>6} {r['A_gflops']:>9.2f} "
              f"{r['D_matmul_gflops']:>9.1f} {r['A/D']:>6.1%}")
    for cell, r in report["throughput"].items():
        ratios = ", ".join(f"{p['A']['rate'] / p['B_same']['rate']:.2f}" for p in r["pairs"])
        keep = ", ".join(f"{p['A']['rate'] / p['B_keep']['rate']:.2f}" for p in r["pairs"])
        print(f"{cell}: A/B_same in one process {r['A/B_same_paired']:.2f} (pairs: {ratios}); "
              f"A/B_keep {r['A/B_keep_paired']:.2f} ({keep}); "
              "epoch ms (train, validation, epoch end): " + "; ".join(
                  f"{variant} " + ", ".join(f"{ms:.0f}" for ms in phases.values())
                  for variant, phases in r["epoch_phases_ms"].items()))
    memory = report["dataset_memory"]
    print(f"data: {memory['dataset_mib']} MiB kept, peak {memory['peak_mib']} MiB while "
          f"building ({memory['peak_over_dataset']}x)")
    for name, lever in report.get("levers", {}).items():
        print(f"lever {name:24} {lever['sequences_per_second']:8.0f} seq/s "
              f"{lever['vs_defaults']:.2f}x defaults")
    if "time_to_accuracy" in report:
        t = report["time_to_accuracy"]
        print(f"time to 0.99 val accuracy (shifted_digit_lstm.yaml): {t}")


if __name__ == "__main__":
    main()
