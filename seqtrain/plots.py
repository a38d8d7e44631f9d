"""Learning curves and attention weights, drawn as PNG files.

`curves.png` of one run, `seqtrain plot` overlays of many runs' curves, and `seqtrain
plot-attention`'s weights of a model with `model.attention`.

matplotlib is imported only here, only when plotting, and only its object API (`Figure`)
with the Agg renderer: no pyplot state, no display needed.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqtrain import atomic
from seqtrain.errors import SeqtrainError
from seqtrain.listing import find_runs_under
from seqtrain.report import ordered_metrics
from seqtrain.rundir import check_destination

CURVES_SIZE = (10, 4)  # inches at 100 dpi: 1000 x 400 pixels
PLOT_SIZE = (8, 5)  # 800 x 500 pixels
DPI = 100


LABEL_KEYS = 3  # settings named in a legend label, at most
LABEL_CHARS = 60  # a longer label is cut, ending in "…"


def _figure(size: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _epoch_ticks(ax) -> None:
    """Whole epochs on the x axis, also for runs of one epoch (a view of one integer)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _save(figure, path: Path) -> None:
    with atomic.storage_errors(path):
        tmp = atomic.temporary_path(path, suffix=".png")
        figure.savefig(tmp, format="png", dpi=DPI)
        atomic.commit(tmp, path)


def read_metrics(run_dir: Path, allow_empty: bool = False) -> list[dict[str, float]]:
    """`metrics.csv` of a run as rows of floats.

    Args:
        run_dir: The run directory.
        allow_empty: Return no rows, rather than raise, for a file with no epoch yet.

    Raises:
        SeqtrainError: The file is missing, damaged, or (unless `allow_empty`) empty.
    """
    path = run_dir / "metrics.csv"
    try:
        with open(path, newline="") as file:
            # An empty cell: a column a later session added (a run resumed by a newer release).
            rows = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                    for row in csv.DictReader(file)]
    except FileNotFoundError:
        raise SeqtrainError(f"{path} is missing: the run has not finished an epoch, or "
                            f"{run_dir} is not a run directory") from None
    except (ValueError, TypeError, OSError) as err:
        raise SeqtrainError(f"{path} is damaged ({err})") from None
    if not rows and not allow_empty:
        raise SeqtrainError(f"{path} has no epochs yet")
    return rows


def write_curves(run_dir: Path, rows: list[dict[str, float]], config: dict[str, Any]) -> Path:
    """Draw loss and the main metric, train and validation, per epoch, to `curves.png`."""
    figure = _figure(CURVES_SIZE)
    axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in rows]
    metric = next((k for k in ordered_metrics(rows[-1]) if k != "loss"
                   and not k.startswith("val_")), None)
    for ax, name in zip(axes, ("loss", metric), strict=True):
        if name is None:
            ax.set_visible(False)
            continue
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if key in rows[-1]:
                ax.plot(epochs, [row[key] for row in rows], style, marker="o", markersize=3,
                        label=key)
        ax.set_xlabel("epoch")
        _epoch_ticks(ax)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if log_scale("loss", [[row[key] for row in rows] for key in ("loss", "val_loss")
                          if key in rows[-1]]):
        axes[0].set_yscale("log")
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


def _config(run_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SeqtrainError(f"{run_dir / 'config.yaml'} is unreadable ({err})") from None
    return config if isinstance(config, dict) else {}


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}  # a run killed before its summary: no best epoch to mark
    return summary if isinstance(summary, dict) else {}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: `{"model": {"cell": "gru"}}` -> `{"model.cell": "gru"}`."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def legend_labels(configs: list[dict[str, Any]], names: list[str]) -> list[str]:
    """One short label per run (or group of seeds): the settings that tell them apart.

    Runs of different experiments (their `name` or `data.task` differ) are labelled by
    name, plus up to two differing `model.`/`train.` settings: `adding: model.cell=gru`.
    Otherwise by up to three differing settings, `model.*` first, then `train.*`, then
    `seed`, then the rest: `model.cell=gru, model.units=64`. A setting missing from some
    runs (`-`) is named only when nothing else differs; more settings are added only while
    two labels would be the same. Labels are cut at `LABEL_CHARS`. With nothing that
    differs (or one run), each is labelled by its name in `names`.
    """
    flat = [flatten(c) for c in configs]
    keys: list[str] = []
    for settings_ in flat:
        keys += [k for k in settings_ if k not in keys]
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]
    if len(configs) < 2 or not differ:
        return list(names)
    complete = sorted((k for k in differ if all(f.get(k) is not None for f in flat)),
                      key=_key_rank)
    missing = sorted((k for k in differ if k not in complete), key=_key_rank)
    if "name" in differ or "data.task" in differ:
        head = ["name"] if "name" in differ else ["name", "data.task"]
        rest = [k for k in complete + missing if k not in head]
        chosen = [k for k in complete if k.startswith(("model.", "train."))][:2]
    else:
        head = []
        rest = complete + missing
        chosen = complete[:LABEL_KEYS] or missing[:LABEL_KEYS]
    extra = [k for k in rest if k not in chosen]
    while True:
        labels = [_label(f, head, chosen) for f in flat]
        if len(set(labels)) == len(labels) or not extra:
            break
        chosen.append(extra.pop(0))  # two lines would look the same: one more setting
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{name}]" for label, name in zip(labels, names, strict=True)]
    return [label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"
            for label in labels]


def _key_rank(key: str) -> int:
    """Which settings a label names first: model, train, seed, the rest."""
    if key.startswith("model."):
        return 0
    if key.startswith("train."):
        return 1
    return 2 if key == "seed" else 3


def _label(flat: dict[str, Any], head: list[str], keys: list[str]) -> str:
    named = ", ".join(f"{k}={_shown(flat.get(k))}" for k in keys)
    if not head:
        return named
    first = " ".join([_shown(flat.get("name"))]
                     + [f"({_shown(flat.get(k))})" for k in head[1:]])
    return f"{first}: {named}" if named else first


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(_shown, value))
    if isinstance(value, float):
        return f"{value:.3g}"  # a searched learning rate: 0.00312, not 0.003123456789
    return str(value)


LOSSES = ("loss", "mse", "mae")  # positive values that can fall over decades


def log_scale(metric: str, curves: list[list[float]]) -> bool:
    """Whether to draw `metric` on a log axis.

    Yes for a loss (or mse, mae) whose plotted values are positive and span 100x or more
    (max / min >= 100), where a linear axis would flatten the later epochs of every run
    into one line. Accuracies, and losses within two decades, stay linear.
    """
    if metric.removeprefix("val_") not in LOSSES:
        return False
    values = [v for curve in curves for v in curve if v == v]  # NaN (diverged) left out
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) >= 100


def best_epoch(run_dir: Path, rows: list[dict[str, float]]) -> int | None:
    """The run's best epoch (the one `best.keras` holds), as summary.json records it.

    Without one (a run killed before its summary), the epoch with the best monitored value
    in `rows` (`val_loss`, lowest, unless the summary says otherwise); None if neither.
    """
    summary = _summary(run_dir)
    if isinstance(summary.get("best_epoch"), int):
        return summary["best_epoch"]
    monitor = summary.get("monitor", "val_loss")
    scored = [row for row in rows if row.get(monitor, float("nan")) == row.get(monitor)]
    if not scored:
        return None
    pick = max if summary.get("mode") == "max" else min
    return int(pick(scored, key=lambda row: row[monitor])["epoch"])


def plot_runs(folders: list[Path], output: Path, metric: str = "val_loss",
              skipped: Callable[[str], None] = lambda line: None) -> Path:
    """Overlay `metric` per epoch for every run in `folders` (run or sweep folders).

    Runs whose configs differ only in `seed` are drawn as one mean line with a min-max
    band. The legend shows the settings that differ between the lines (`legend_labels`);
    a star marks each run's best epoch; losses are drawn on a log axis when they span
    decades (`log_scale`).

    A run found in a folder that has not finished an epoch, or lacks `metric`, is left out
    and `skipped` is called with a line saying so; a run directory named in `folders` must
    be plottable.

    Raises:
        SeqtrainError: No runs found, all of them skipped, or a named run is broken or
            lacks `metric`.
    """
    runs: list[Path] = []
    found = find_runs_under(folders)  # each run once, even where the folders overlap
    for run_dir, folder in found:
        if run_dir == folder:
            runs.append(run_dir)  # named on the command line: its problem stops the plot
            continue
        reason = _unplottable(run_dir, metric)
        if reason is None:
            runs.append(run_dir)
        else:
            skipped(f"skipped {run_dir}: {reason}")
    where = ", ".join(map(str, folders))
    if not runs:
        if found:
            raise SeqtrainError(f"nothing to plot in {where}: every run was skipped (above); "
                                "plot runs that have finished an epoch and record "
                                f"{metric!r}, or pick another --metric")
        raise SeqtrainError(f"no run directories in {where}")
    figure = comparison_figure(runs, metric)
    output.parent.mkdir(parents=True, exist_ok=True)
    _save(figure, output)
    return output


def _unplottable(run_dir: Path, metric: str) -> str | None:
    """Why a run found in a folder cannot be plotted, in a few words; None if it can."""
    if not (run_dir / "metrics.csv").is_file():
        return "no finished epoch yet"
    try:
        rows = read_metrics(run_dir, allow_empty=True)
        _config(run_dir)
    except SeqtrainError as err:
        return str(err)
    if not rows:
        return "no finished epoch yet"  # a header alone: the first epoch is under way
    if metric in rows[-1]:
        return None
    kind = (_summary(run_dir).get("task") or {}).get("kind")
    if kind and metric.removeprefix("val_") in ("accuracy", *LOSSES):
        return f"no {metric!r} (a {kind} run)"  # a metric of the other kind of task
    return f"no {metric!r} (it has {', '.join(k for k in rows[-1] if k != 'epoch')})"


def comparison_figure(runs: list[Path], metric: str):
    """The figure `plot_runs` saves: one line (or band of seeds) per setting of `runs`.

    The legend goes below the axes, in two columns when there are many short labels; the
    figure grows taller for a long legend so that the axes keep their size.

    Raises:
        SeqtrainError: A run is broken, or it lacks `metric`.
    """
    groups: dict[str, list[tuple[Path, list[dict[str, float]]]]] = defaultdict(list)
    configs: dict[str, dict[str, Any]] = {}
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
        configs.setdefault(key, config)
    # A line of one run is named after its folder, a band of seeds after the experiment;
    # a band's label does not name the seed of its first run.
    names = [str(members[0][0].name if len(members) == 1
                 else configs[key].get("name") or members[0][0].name)
             for key, members in groups.items()]
    shown = [configs[key] if len(members) == 1
             else {k: v for k, v in configs[key].items() if k != "seed"}
             for key, members in groups.items()]
    labels = dict(zip(groups, legend_labels(shown, names), strict=True))
    entries = [labels[key] if len(members) == 1
               else f"{labels[key]} (mean of {len(members)} seeds)"
               for key, members in groups.items()] + ["best epoch (best.keras)"]
    columns = 2 if len(entries) > 4 and max(map(len, entries)) <= 40 else 1
    legend_rows = -(-len(entries) // columns)
    figure = _figure((PLOT_SIZE[0], PLOT_SIZE[1] + max(0, legend_rows - 3) * 0.2))
    ax = figure.subplots()
    for members, label in zip(groups.values(), entries, strict=False):
        if len(members) == 1:
            rows = members[0][1]
            (line,) = ax.plot([r["epoch"] for r in rows], [r[metric] for r in rows],
                              label=label)
        else:
            length = min(len(rows) for _, rows in members)
            epochs = [members[0][1][i]["epoch"] for i in range(length)]
            values = [[rows[i][metric] for _, rows in members] for i in range(length)]
            mean = [sum(v) / len(v) for v in values]
            (line,) = ax.plot(epochs, mean, label=label)
            ax.fill_between(epochs, [min(v) for v in values], [max(v) for v in values],
                            color=line.get_color(), alpha=0.2)
        for run_dir, rows in members:
            best = best_epoch(run_dir, rows)
            at = [r[metric] for r in rows if r["epoch"] == best]
            if at:
                ax.plot([best], at, "*", color=line.get_color(), markersize=11,
                        markeredgecolor="black", markeredgewidth=0.5, zorder=3)
    ax.plot([], [], "*", color="gray", markersize=11, markeredgecolor="black",
            markeredgewidth=0.5, label=entries[-1])
    if log_scale(metric, [[r[metric] for r in rows] for members in groups.values()
                          for _, rows in members]):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    _epoch_ticks(ax)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
                  ncols=columns, fontsize=8)
    ax.set_title(f"{metric} of {len(runs)} run(s)", fontsize=10)
    return figure


# --- attention weights ---------------------------------------------------------------------

ATTENTION_ROW_HEIGHT = 1.8  # inches per sequence
MAX_STEP_LABELS = 25  # more steps than this: every k-th step is labelled


def step_labels(preprocessing: dict[str, Any], x: Any, steps: int) -> list[str]:
    """Labels of one sequence's steps on an attention plot: its words, or its step numbers.

    Args:
        preprocessing: The run's `preprocessing.json`: a text run's steps are labelled with
            their words from the stored vocabulary (`[UNK]` for a word it lacks).
        x: The sequence's model inputs, (T, ...).
        steps: How many steps to label (the sequence's steps before any padding).
    """
    inputs = preprocessing["input"]
    if inputs.get("encoding") == "text":
        vocabulary = inputs["vocabulary"]
        return [vocabulary[int(token)] for token in x[:steps]]
    return [str(t) for t in range(steps)]


def plot_attention(run_dir: Path, inputs: Path | None, output: Path, *, split: str | None = None,
                   count: int = 4, checkpoint: str = "best", device: str = "auto") -> Path:
    """Draw the attention weights of the first `count` sequences of `inputs` (or `split`).

    One panel per sequence: its weight at every step (padding left out), titled with its
    key, the prediction and, for a split, the true value.

    Raises:
        SeqtrainError: A run without attention, a bad count or output, inputs that do not
            fit the run.
    """
    import numpy as np

    from seqtrain.predictions import Predictions
    from seqtrain.trained import TrainedRun

    if count < 1:
        raise SeqtrainError(f"--count got {count}; expected 1 or more sequences")
    if output.suffix.lower() != ".png":
        raise SeqtrainError(f"-o {output}: plot-attention writes a PNG; name it ….png")
    if output.is_dir():
        raise SeqtrainError(f"-o {output} is a folder; give a file name such as "
                            f"{output / 'attention.png'}")
    trained = TrainedRun(run_dir, checkpoint, device)
    check_destination(output, trained.path, "write the plot elsewhere")
    trained.check_attention("plot-attention")
    part = trained.prepare(inputs, split)
    part = part.take(slice(min(count, len(part))))
    predictions = Predictions(trained.preprocessing, trained.predict_arrays(part.x), part,
                              with_true=split is not None,
                              attention=trained.attention_arrays(part.x))
    weights = np.asarray(predictions.attention)
    # A sequence's steps end at its last observed one: padding has weight 0 and no bar.
    lengths = predictions.steps().sum(axis=1).tolist()
    longest = max(lengths)  # one step axis for all panels: shorter sequences end earlier
    figure = _figure((10, 0.6 + ATTENTION_ROW_HEIGHT * len(part)))
    axes = figure.subplots(len(part), 1, squeeze=False)[:, 0]
    keys = predictions.keys.tolist()
    true = predictions.true_values()
    for n, ax in enumerate(axes):
        steps = lengths[n]
        ax.bar(np.arange(steps), weights[n, :steps], width=0.9 if longest <= 100 else 1.0,
               color="tab:blue")
        labels = step_labels(trained.preprocessing, part.x[n], steps)
        every = _label_spacing(longest)
        ax.set_xticks(np.arange(0, steps, every), labels[::every],
                      fontsize=7, rotation=90 if max(map(len, labels), default=0) > 3 else 0)
        ax.set_xlim(-0.5, max(longest, 1) - 0.5)
        ax.set_ylim(0, float(weights[n, :steps].max()) * 1.1 if steps else 1.0)
        if not steps:  # e.g. a text of punctuation only: every step is padding
            ax.text(0.5, 0.5, "no steps: all padding", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9)
        ax.set_ylabel("weight")
        ax.set_title(f"{predictions.key_name} {keys[n]}: {_predicted(predictions, n, true)}",
                     fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("step")
    figure.suptitle(f"attention weights, {trained.path.name} ({checkpoint} checkpoint)",
                    fontsize=10)
    _save(figure, output)
    return output


def _label_spacing(steps: int) -> int:
    """Steps between labels: 1, 2, 5, 10, 20, 50, ... so that at most MAX_STEP_LABELS show."""
    spacing = 1
    while -(-steps // spacing) > MAX_STEP_LABELS:
        spacing *= 2.5 if str(spacing).startswith("2") else 2
        spacing = int(spacing)
    return spacing


def _predicted(predictions, n: int, true) -> str:
    """'predicted 3 (p 0.97), true 3' for one sequence of a plot's title."""
    if predictions.kind == "classification":
        classes = predictions.classes  # the names the user's data gives them
        chosen = int(predictions.outputs[n].argmax())
        text = f"predicted {classes[chosen]} (p {float(predictions.outputs[n, chosen]):.2f})"
        return text + (f", true {classes[int(true[n])]}" if true is not None else "")
    values = ", ".join(f"{v:.4g}" for v in predictions.values()[n].tolist())
    known = "" if true is None else " (true " + ", ".join(
        f"{v:.4g}" for v in true[n].tolist()) + ")"
    return f"predicted {values}{known}"
