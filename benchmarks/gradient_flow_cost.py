"""What the gradient probe (`train.gradient_flow: epoch`) costs, against an epoch.

    python benchmarks/gradient_flow_cost.py [--epochs 6] [--out results.json]

Trains each experiment below twice through the CLI, with the probe on and off, and
reports, from the run with it on, the probe's median seconds per epoch against the median
epoch (both measured in the same process, so a busy machine slows both alike), the first
probe (which traces its function) against the first epoch, and the whole run's share. The
run with the probe off gives the epoch time without it, as a check.

Experiments: the reference shape of docs/performance.md (LSTM and GRU 128, 50 one-hot
steps, batch 128), the default experiment (configs/shifted_digit_lstm.yaml) and the
adding problem at 100 steps (configs/adding_lstm.yaml), each for `--epochs` epochs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import REFERENCE  # noqa: E402

EXPERIMENTS = {
    "reference LSTM": (REFERENCE, ["data.num_samples=4096"]),
    "reference GRU": (REFERENCE, ["data.num_samples=4096", "model.cell=gru"]),
    "default (shifted_digit_lstm)": (ROOT / "configs" / "shifted_digit_lstm.yaml", []),
    "adding_lstm, T=100": (ROOT / "configs" / "adding_lstm.yaml", []),
}


def train(config: Path, run_dir: Path, settings: list[str]) -> tuple[dict, list[float]]:
    """Run `seqtrain run`; its summary and epoch seconds."""
    sets = [arg for setting in settings for arg in ("--set", setting)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "seqtrain", "run", str(config), "--run-dir",
                    str(run_dir), "--quiet", *sets], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as file:
        seconds = [float(row["epoch_seconds"]) for row in csv.DictReader(file)]
    return summary, seconds


def measure(name: str, source, settings: list[str], epochs: int, folder: Path) -> dict:
    if isinstance(source, dict):
        config = folder / f"{len(list(folder.iterdir()))}.json"
        config.write_text(json.dumps({**source, "device": "cpu"}))
    else:
        config = source
    settings = [*settings, f"train.epochs={epochs}", "train.early_stopping=null",
                "train.tensorboard=false", "device=cpu"]
    on, on_epochs = train(config, folder / f"{name}-on".replace(" ", "_"),
                          [*settings, "train.gradient_flow=epoch"])
    off, off_epochs = train(config, folder / f"{name}-off".replace(" ", "_"),
                            [*settings, "train.gradient_flow=off"])
    probe = on["gradient_flow"]["probe"]
    epoch = statistics.median(on_epochs[1:])
    return {
        "experiment": name,
        "epochs": epochs,
        "probe_seconds": probe["seconds"],
        "epoch_seconds": round(epoch, 4),
        "epoch_seconds_without_probe": round(statistics.median(off_epochs[1:]), 4),
        "per_epoch_cost": round(probe["seconds"] / (epoch - probe["seconds"]), 4),
        "first_probe_seconds": probe["first_seconds"],
        "first_epoch_seconds": round(on_epochs[0], 3),
        "run_cost": round((probe["first_seconds"] + probe["seconds"] * (epochs - 1))
                          / (sum(on_epochs) - probe["first_seconds"]
                             - probe["seconds"] * (epochs - 1)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--only", help="Run only experiments whose name contains this.")
    parser.add_argument("--out", type=Path, help="Also write the results as JSON here.")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, settings) in EXPERIMENTS.items():
            if args.only and args.only not in name:
                continue
            results.append(measure(name, source, settings, args.epochs, Path(tmp)))
            print(json.dumps(results[-1]), file=sys.stderr)
    print("| experiment | epoch (s) | probe per epoch (s) | per-epoch cost | first probe "
          "(s, traces) | whole run's cost |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['experiment']} | {r['epoch_seconds']:.2f} | {r['probe_seconds']:.3f} | "
              f"{100 * r['per_epoch_cost']:.1f}% | {r['first_probe_seconds']:.2f} | "
              f"{100 * r['run_cost']:.1f}% ({r['epochs']} epochs) |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
