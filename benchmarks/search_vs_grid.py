"""Search against grid: a TPE search with median pruning and a grid, at equal total epochs.

    python benchmarks/search_vs_grid.py [--epochs 12] [--sequence-length 50] [--seed 42]
                                        [--samples 10000] [--runs-dir DIR] [--out FILE]

The task is the shipped `configs/adding_gru.yaml` at `data.sequence_length` 50, trained
for `--epochs` epochs at most (its early stopping kept), with learning rate, units and
clipnorm free:

  grid    `seqtrain sweep --grid`: learning rate 1e-3, 1e-2 x units 32, 64 x clipnorm 0.5,
          5 (eight trials, two points per axis inside the search's ranges);
  search  `seqtrain sweep --search tpe --prune median`: learning rate float(3e-4,3e-2,log),
          units int(16,96), clipnorm float(0.1,10,log), drawn one trial at a time (--jobs
          1) for as long as a whole trial still fits in the epochs the grid ran: its
          `--trials` is raised by one and the same command re-run, which extends the study.

Both pick their best trial by the objective, best `val_loss`; the test MSE of that trial is
what each found (the test split is never optimised). Also reported: the epochs each spent,
the trials each ran, the epochs the pruner saved (pruned trials' unrun epochs), and the
task's naive baseline (always answering 1.0: MSE 1/6). Both use the same seed; the grid's
trials run one at a time as well. Results: `--out` (default
benchmarks/results/search_vs_grid.json) and a markdown table on stdout; the sweep folders
stay under `--runs-dir`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "adding_gru.yaml"
GRID = {"train.learning_rate": "1e-3,1e-2", "model.units": "32,64",
        "train.clipnorm": "0.5,5"}
SPACE = {"train.learning_rate": "float(3e-4,3e-2,log)", "model.units": "int(16,96)",
         "train.clipnorm": "float(0.1,10,log)"}
BASELINE_MSE = 1 / 6  # the adding task's answer: always 1.0, the mean of the target


def seqtrain(*args: str) -> str:
    """Run the CLI in a child process, as a user would; its stdout."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "seqtrain", *args], env=env, text=True,
                          capture_output=True)
    if done.returncode not in (0, 1):
        sys.exit(f"seqtrain {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def last_lines(folder: Path) -> list[dict]:
    """Each trial's latest line of the folder's `sweep.jsonl`, with its epochs run."""
    latest = {}
    for line in (folder / "sweep.jsonl").read_text().splitlines():
        record = json.loads(line)
        latest[record["trial"]] = record
    for record in latest.values():
        summary = json.loads((Path(record["run_dir"]) / "summary.json").read_text())
        record["epochs_run"] = summary["epochs_run"]
    return list(latest.values())


def run_grid(common: list[str], runs_dir: Path) -> dict:
    grids = [arg for key, values in GRID.items() for arg in ("--grid", f"{key}={values}")]
    started = time.monotonic()
    seqtrain("sweep", *common, *grids, "--name", "grid", "--runs-dir", str(runs_dir))
    trials = last_lines(runs_dir / "grid")
    best = min((t for t in trials if t["status"] == "completed"),
               key=lambda t: t["best_val_loss"])
    return {"trials": len(trials), "epochs": sum(t["epochs_run"] for t in trials),
            "seconds": round(time.monotonic() - started, 1), "best": best["trial"],
            "best_val_loss": best["best_val_loss"], "test_mse": best["test_mse"],
            "test_mae": best["test_mae"], "pruned": 0, "epochs_saved_by_pruner": 0}


def run_search(common: list[str], runs_dir: Path, budget: int, epochs: int) -> dict:
    space = [arg for key, spec in SPACE.items() for arg in ("--space", f"{key}={spec}")]
    search = [*common, "--search", "tpe", "--prune", "median", *space, "--name", "search",
              "--runs-dir", str(runs_dir)]
    trials, used = budget // epochs, 0
    started = time.monotonic()
    while True:
        seqtrain("sweep", *search, "--trials", str(trials))
        used = sum(t["epochs_run"] or 0 for t in last_lines(runs_dir / "search"))
        if budget - used < epochs:  # a further trial might not fit
            break
        trials += 1
    seconds = round(time.monotonic() - started, 1)
    study = json.loads(seqtrain("sweep", *search, "--trials", str(trials), "--dry-run",
                                "--json", "--quiet"))
    rows = study["trials"]
    best = next(row for row in rows if row["number"] == study["best"]["number"])
    pruned = [row for row in rows if row["status"] == "pruned"]
    return {"trials": len(rows), "epochs": sum(row["epochs_run"] or 0 for row in rows),
            "seconds": seconds, "best": best["trial"], "best_val_loss": best["value"],
            "test_mse": best["test_mse"], "test_mae": best["test_mae"],
            "pruned": len(pruned),
            "epochs_saved_by_pruner": sum(epochs - row["epochs_run"] for row in pruned),
            "importances": study["importances"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--sequence-length", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--samples", type=int, default=10000, help="data.num_samples")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "search_vs_grid.json")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where the two sweep folders go (default: a new temporary one)")
    args = parser.parse_args()
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="search-vs-grid-"))
    common = [str(CONFIG), "--set", f"data.sequence_length={args.sequence_length}",
              "--set", f"train.epochs={args.epochs}", "--set", f"seed={args.seed}",
              "--set", f"data.num_samples={args.samples}",
              "--jobs", "1", "--quiet"]
    grid = run_grid(common, runs_dir)
    search = run_search(common, runs_dir, grid["epochs"], args.epochs)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or
              platform.machine(), "cores": os.cpu_count(), "config": str(CONFIG.name),
              "sequence_length": args.sequence_length, "epochs": args.epochs,
              "seed": args.seed, "samples": args.samples,
              "baseline_mse": round(BASELINE_MSE, 4), "runs_dir":
              str(runs_dir), "grid": grid, "search": search}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| | trials | epochs | pruned | epochs the pruner saved | best val_loss "
          "| its test MSE | baseline MSE / its test MSE | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, found in (("grid", grid), ("TPE search", search)):
        print(f"| {name} | {found['trials']} | {found['epochs']} | {found['pruned']} | "
              f"{found['epochs_saved_by_pruner']} | {found['best_val_loss']:.4g} | "
              f"{found['test_mse']:.3g} | {BASELINE_MSE / found['test_mse']:,.0f}x | "
              f"{found['seconds']:,.0f} |")
    print(f"\nbest grid trial: {grid['best']}; best search trial: {search['best']}; "
          f"importances: {search['importances']}; folders in {runs_dir}")


if __name__ == "__main__":
    main()
