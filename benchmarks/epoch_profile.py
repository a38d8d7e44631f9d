"""Where an epoch of seqtrain's training goes: TensorFlow's profiler over A's path.

    python benchmarks/epoch_profile.py [--cell lstm] [--epochs 3] [--samples 4096] [--top 12]

Trains `throughput.py`'s reference experiment as its A does (`run_experiment`, seqtrain's
defaults) and records the last epoch with TensorFlow's profiler (training, validation and the
epoch-end writes). From the trace: each thread's busy time; how long two, one or none of
TensorFlow's compute threads were busy (on 2 cores, the one-thread time is the serial part of
the steps); operation time inside the recurrent loops and outside them; the operations that
took the most time; and those that ran while only one compute thread was busy.
Results: benchmarks/results/epoch_profile.json and stdout.

The profiler adds its own cost to every operation: compare shares within one profile, and
speeds with `throughput.py`.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import sys
import tempfile
from pathlib import Path

import throughput  # sets up the environment as the throughput benchmark does

ROOT = throughput.ROOT
COMPUTE = "tf_Compute"  # TensorFlow's inter-op threads, which run the operations


def profile_epoch(cell: str, epochs: int, samples: int, logdir: Path) -> list[float]:
    """Train the reference config; the last epoch under the profiler. Seconds per epoch."""
    import tensorflow as tf

    from seqtrain import callbacks
    from seqtrain.experiment import run_experiment

    config = throughput.reference_config(cell, samples, epochs)
    begin, end = callbacks.EpochLog.on_epoch_begin, callbacks.ResumableState.on_epoch_end

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == epochs - 1:
            tf.profiler.experimental.start(str(logdir))
        begin(self, epoch, logs)

    def on_epoch_end(self, epoch, logs=None):  # the last callback: after the writes
        end(self, epoch, logs)
        if epoch == epochs - 1:
            tf.profiler.experimental.stop()

    callbacks.EpochLog.on_epoch_begin = on_epoch_begin
    callbacks.ResumableState.on_epoch_end = on_epoch_end
    try:
        with tempfile.TemporaryDirectory() as scratch:
            run_experiment(config, exact_dir=Path(scratch) / "run", display="quiet")
            rows = callbacks.EpochLog.read(Path(scratch) / "run" / "metrics.csv", epochs)
    finally:
        callbacks.EpochLog.on_epoch_begin = begin
        callbacks.ResumableState.on_epoch_end = end
    return [row["epoch_seconds"] for row in rows]


def read_trace(logdir: Path):
    """The host plane of the profile in `logdir`: (thread name, [(start, end, name)]) pairs."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = logdir.rglob("*.xplane.pb")
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    (host,) = [plane for plane in space.planes if plane.name == "/host:CPU"]
    names = {key: meta.name for key, meta in host.event_metadata.items()}
    for line in host.lines:
        events = []
        for event in line.events:
            start = line.timestamp_ns / 1e6 + event.offset_ps / 1e9  # ms
            events.append((start, start + event.duration_ps / 1e9, names[event.metadata_id]))
        yield line.name, events


def merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping intervals joined, in order."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(start, end) for start, end in out]


def is_operation(name: str) -> bool:
    """A kernel's event, `node:OpType`; not the executor's, the threadpool's or a function's."""
    return ":" in name and "::" not in name and not name.startswith(
        ("__inference", "EagerLocalExecute"))


def node(name: str) -> tuple[str, str, str]:
    """(region, node, op type) of an operation event; region is `recurrent` or `outside`."""
    path, kind = name.rsplit(":", 1)
    inner = path.split("StatefulPartitionedCall/")[-1]  # inside the training function
    region = "recurrent" if "/while" in inner else "outside"
    parts: list[str] = []  # the path without the loops' scaffolding and repeated scopes
    for part in inner.split("/"):
        if part not in parts and not part.startswith(("_", "body", "while", "cond", "then")):
            parts.append(part)
    # `_MklMatMul` is oneDNN's rewrite of MatMul, on CPUs where TensorFlow turns oneDNN on:
    # the same operation, counted under one name on every host.
    return region, "/".join(parts), kind.removeprefix("_Mkl")


def working(thread: str, event: str) -> bool:
    """Whether `event` on `thread` is work, not waiting or bookkeeping.

    On a compute thread, the executor running operations; on any other thread, every event
    but the threadpool's own.
    """
    if thread.startswith(COMPUTE):
        return event == "ExecutorState::Process"
    return not event.startswith("ThreadpoolListener")


def analyse(threads, top: int) -> dict:
    """The report's numbers from `read_trace`'s threads, `top` operations per list."""
    busy, compute = {}, []
    for name, events in threads:
        if name == "python":  # blocked in TensorFlow for the whole function call: not busy
            continue
        spans = merged([(s, e) for s, e, what in events if working(name, what)])
        busy[name] = round(sum(e - s for s, e in spans), 1)
        if name.startswith(COMPUTE):
            compute.append((spans, events))
    edges = sorted((t, d) for spans, _ in compute for s, e in spans for t, d in ((s, 1), (e, -1)))
    alone, overlap, running, last = [], collections.Counter(), 0, None
    for at, change in edges:
        if last is not None:
            overlap[running] += at - last
            if running == 1:
                alone.append((last, at))
        running, last = running + change, at
    starts = [s for s, _ in alone]

    def alone_ms(start: float, end: float) -> float:  # of [start, end), one thread busy
        total, k = 0.0, bisect.bisect_right(starts, end) - 1
        while k >= 0 and alone[k][1] > start:
            total += max(0.0, min(end, alone[k][1]) - max(start, alone[k][0]))
            k -= 1
        return total

    ops, serial = collections.Counter(), collections.Counter()
    regions = collections.Counter()
    for _, events in compute:
        for start, end, what in events:
            if not is_operation(what):
                continue
            region, short, kind = node(what)
            regions[region] += end - start
            ops[f"{region} {kind}"] += end - start
            serial[short + ":" + kind] += alone_ms(start, end)
    span = (edges[-1][0] - edges[0][0]) if edges else 0.0

    def rounded(counter):
        return [[key, round(ms, 1)] for key, ms in counter.most_common(top) if ms > 0]

    return {"compute_span_ms": round(span, 1), "thread_busy_ms": busy,
            "compute_threads_busy_ms": {str(k): round(v, 1) for k, v in sorted(overlap.items())},
            "operation_ms": {k: round(v, 1) for k, v in regions.items()},
            "top_operations_ms": rounded(ops), "one_thread_busy_operations_ms": rounded(serial)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--epochs", type=int, default=3, help="The last one is profiled.")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "epoch_profile.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logdir:
        seconds = profile_epoch(args.cell, args.epochs, args.samples, Path(logdir))
        report = {"cell": args.cell, "epochs": args.epochs, "samples": args.samples,
                  "epoch_seconds": [round(s, 3) for s in seconds],
                  **analyse(read_trace(Path(logdir)), args.top)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)


def print_report(report: dict) -> None:
    overlap = report["compute_threads_busy_ms"]
    span = report["compute_span_ms"] or 1.0
    print(f"{report['cell']}: epoch seconds {report['epoch_seconds']} (the last profiled); "
          f"compute threads over {span:.0f} ms: " + ", ".join(
              f"{n} busy {ms:.0f} ms ({ms / span:.0%})" for n, ms in overlap.items()))
    print("thread busy ms: " + ", ".join(f"{name[:24]} {ms:.0f}"
                                         for name, ms in report["thread_busy_ms"].items() if ms))
    print("operation ms: " + ", ".join(f"{k} {v:.0f}" for k, v in report["operation_ms"].items()))
    for title, key in (("most time", "top_operations_ms"),
                       ("while one compute thread was busy", "one_thread_busy_operations_ms")):
        print(f"operations, {title}:")
        for name, ms in report[key]:
            print(f"  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    sys.exit(main())
