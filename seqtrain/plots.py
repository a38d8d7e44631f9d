"""Learning curves: `curves.png` of one run, and `seqtrain plot` overlays of many.

matplotlib is imported only here, only when plotting, and only its object API (`Figure`)
with the Agg renderer: no pyplot state, no display needed.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from seqtrain import atomic
from seqtrain.errors import SeqtrainError
from seqtrain.listing import find_runs

CURVES_SIZE = (10, 4)  # inches at 100 dpi: 1000 x 400 pixels
PLOT_SIZE = (8, 5)  # 800 x 500 pixels
DPI = 100


def _figure(size: tuple[int, int]):
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _save(figure, path: Path) -> None:
    with atomic.storage_errors(path):
        tmp = atomic.temporary_path(path, suffix=".png")
        figure.savefig(tmp, format="png", dpi=DPI)
        atomic.commit(tmp, path)


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """`metrics.csv` of a run as rows of floats.

    Raises:
        SeqtrainError: The file is missing, empty or damaged.
    """
    path = run_dir / "metrics.csv"
    try:
        with open(path, newline="") as file:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]
    except FileNotFoundError:
        raise SeqtrainError(f"{path} is missing: the run has not finished an epoch, or "
                            f"{run_dir} is not a run directory") from None
    except (ValueError, TypeError, OSError) as err:
        raise SeqtrainError(f"{path} is damaged ({err})") from None
    if not rows:
        raise SeqtrainError(f"{path} has no epochs yet")
    return rows


def write_curves(run_dir: Path, rows: list[dict[str, float]], config: dict[str, Any]) -> Path:
    """Draw loss and the main metric, train and validation, per epoch, to `curves.png`."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(CURVES_SIZE)
    axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in rows]
    metric = next((k for k in rows[-1] if k not in ("epoch", "loss", "learning_rate",
                                                  "epoch_seconds") and not k.startswith("val_")),
                  None)
    for ax, name in zip(axes, ("loss", metric), strict=True):
        if name is None:
            ax.set_visible(False)
            continue
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if key in rows[-1]:
                ax.plot(epochs, [row[key] for row in rows], style, marker="o", markersize=3,
                        label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if min(row["loss"] for row in rows) > 0:
        axes[0].set_yscale("log")  # losses fall over decades
    figure.suptitle(f"{run_dir.name}\n{settings(config)}", fontsize=10)
    path = run_dir / "curves.png"
    _save(figure, path)
    return path


def settings(config: dict[str, Any]) -> str:
    """The key settings of a run in one line, for a title."""
    model, train = config.get("model", {}), config.get("train", {})
    data = config.get("data", {})
    return (f"{model.get('cell')} units={model.get('units')} layers={model.get('num_layers')} "
            f"dropout={model.get('dropout')} | {train.get('optimizer')} "
            f"lr={train.get('learning_rate')} batch={train.get('batch_size')} | "
            f"{data.get('task')} T={data.get('sequence_length')} seed={config.get('seed')}")


def _overrides(run_dir: Path) -> list[str]:
    path = run_dir / "overrides.txt"
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _config(run_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SeqtrainError(f"{run_dir / 'config.yaml'} is unreadable ({err})") from None
    return config if isinstance(config, dict) else {}


def label(overrides: list[str]) -> str:
    """`model.cell=gru model.units=64 seed=3` -> `cell=gru units=64` (seeds are averaged)."""
    parts = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() not in ("seed", "name"):
            parts.append(f"{key.strip().rsplit('.', 1)[-1]}={value.strip()}")
    return " ".join(parts)


def plot_runs(folders: list[Path], output: Path, metric: str = "val_loss") -> Path:
    """Overlay `metric` per epoch for every run in `folders` (run or sweep folders).

    Runs whose configs differ only in `seed` are drawn as one mean line with a min-max
    band; each line is labelled by its overrides.

    Raises:
        SeqtrainError: No runs found, a run is broken, or it lacks `metric`.
    """
    runs = find_runs(folders)
    if not runs:
        raise SeqtrainError(f"no run directories in {', '.join(map(str, folders))}")
    groups: dict[str, list[tuple[Path, list[dict[str, float]]]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for run_dir in runs:
        rows = read_metrics(run_dir)
        if metric not in rows[-1]:
            available = ", ".join(k for k in rows[-1] if k != "epoch")
            raise SeqtrainError(f"{run_dir / 'metrics.csv'} has no {metric!r}; "
                                f"expected one of: {available}")
        config = _config(run_dir)
        key = json.dumps({k: v for k, v in config.items() if k not in ("seed", "name")},
                         sort_keys=True)
        groups[key].append((run_dir, rows))
        labels.setdefault(key, label(_overrides(run_dir)) or run_dir.name)
    figure = _figure(PLOT_SIZE)
    ax = figure.subplots()
    for key, members in groups.items():
        if len(members) == 1:
            rows = members[0][1]
            ax.plot([r["epoch"] for r in rows], [r[metric] for r in rows], label=labels[key])
            continue
        length = min(len(rows) for _, rows in members)
        epochs = [members[0][1][i]["epoch"] for i in range(length)]
        values = [[rows[i][metric] for _, rows in members] for i in range(length)]
        mean = [sum(v) / len(v) for v in values]
        (line,) = ax.plot(epochs, mean, label=f"{labels[key]} (mean of {len(members)} seeds)")
        ax.fill_between(epochs, [min(v) for v in values], [max(v) for v in values],
                        color=line.get_color(), alpha=0.2)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{metric} of {len(runs)} run(s)", fontsize=10)
    output.parent.mkdir(parents=True, exist_ok=True)
    _save(figure, output)
    return output
