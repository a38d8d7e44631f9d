"""Gradient flow through time, drawn: one run's `gradient_flow.png`, and runs overlaid.

The y axis is logarithmic: a gradient that vanishes falls geometrically with the distance
from the last step, a straight line there. Steps whose norm is zero (underflow) or not
measured (padding) are left out of a line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seqtrain import gradient_flow as flow
from seqtrain.errors import SeqtrainError
from seqtrain.listing import find_runs_under
from seqtrain.plots import PLOT_SIZE, _config, _figure, _save, legend_labels

EPOCHS_DRAWN = 5  # a run's own plot: the first, the last and up to three between


def drawn_epochs(epochs: list[int]) -> list[int]:
    """The epochs a run's own plot draws: evenly spread, first and last included."""
    if len(epochs) <= EPOCHS_DRAWN:
        return list(epochs)
    picks = np.linspace(0, len(epochs) - 1, EPOCHS_DRAWN).round().astype(int)
    return [epochs[i] for i in sorted(set(picks))]


def _positive(norms: np.ndarray) -> np.ndarray:
    """`norms` with zeros (nothing to draw on a log axis) as NaN."""
    return np.where(norms > 0, norms, np.nan)


def _ratio_text(norms: np.ndarray) -> str:
    ratio = flow.first_to_last(norms)
    if math.isnan(ratio):
        return "n/a"
    return "0 (underflow)" if ratio == 0 else f"{ratio:.1e}"


def write_gradient_flow(run_dir: Path, flows: dict[int, np.ndarray], name: str) -> Path:
    """Draw `||dL/dx_t||` against t for a few epochs of one run to `gradient_flow.png`."""
    figure = _figure(PLOT_SIZE)
    ax = figure.subplots()
    epochs = drawn_epochs(sorted(flows))
    colors = _colors(len(epochs))
    for epoch, color in zip(epochs, colors, strict=True):
        norms = flows[epoch]
        ax.plot(np.arange(1, len(norms) + 1), _positive(norms), color=color,
                label=f"epoch {epoch} (first/last {_ratio_text(norms)})")
    _axes(ax, "||dL/dx_t|| on the probe batch")
    ax.legend(fontsize=8)
    ax.set_title(f"{name}: the loss gradient reaching each input step", fontsize=10)
    path = run_dir / flow.PLOT
    _save(figure, path)
    return path


def plot_gradient_flow(folders: list[Path], output: Path, epoch: int | None = None,
                       skipped: Callable[[str], None] = lambda line: None) -> Path:
    """Overlay the gradient flow of every run in `folders`, relative to each last step.

    Each line is one run's `||dL/dx_t|| / ||dL/dx_T||` at `epoch` (default: its last
    measured epoch): comparable across cells and tasks whose losses differ in scale. The
    legend names the settings that differ and each run's first-to-last ratio.

    A run found in a folder without that epoch's measurement is skipped (`skipped` says
    so); a run directory named in `folders` must have it.

    Raises:
        SeqtrainError: No runs, none measured, or a named run without the measurement.
    """
    runs: list[tuple[Path, int, np.ndarray]] = []
    found = find_runs_under(folders)
    for run_dir, folder in found:
        reason, picked = _measured(run_dir, epoch)
        if reason is None:
            runs.append((run_dir, *picked))
        elif run_dir == folder:
            raise SeqtrainError(f"{run_dir}: {reason}")
        else:
            skipped(f"skipped {run_dir}: {reason}")
    where = ", ".join(map(str, folders))
    if not runs:
        if found:
            hint = ("pick an --epoch that the runs have" if epoch else
                    "plot runs trained with train.gradient_flow: epoch")
            raise SeqtrainError(f"nothing to plot in {where}: every run was skipped (above); "
                                f"{hint}")
        raise SeqtrainError(f"no run directories in {where}")
    configs = [_config(run_dir) for run_dir, _, _ in runs]  # each read by `_measured`
    labels = legend_labels(configs, [run_dir.name for run_dir, _, _ in runs])
    lengths = [(c.get("data") or {}).get("sequence_length") for c in configs]
    if len(set(map(str, lengths))) > 1:  # what gradient flow depends on most: always named
        labels = [label if "sequence_length" in label else f"{label}, T={length}"
                  for label, length in zip(labels, lengths, strict=True)]
    figure = _figure(PLOT_SIZE)
    ax = figure.subplots()
    for (_, at, norms), label, color in zip(runs, labels, _colors(len(runs)),
                                            strict=True):
        last = norms[np.isfinite(norms)][-1]
        relative = norms / last if last > 0 else np.full_like(norms, np.nan)
        ax.plot(np.arange(1, len(norms) + 1), _positive(relative), color=color,
                label=f"{label} (epoch {at}, first/last {_ratio_text(norms)})")
    _axes(ax, "||dL/dx_t|| / ||dL/dx_T||")
    figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8)
    which = f"epoch {epoch}" if epoch else "each run's last epoch"
    ax.set_title(f"gradient reaching each input step, {which}, {len(runs)} run(s)",
                 fontsize=10)
    output.parent.mkdir(parents=True, exist_ok=True)
    _save(figure, output)
    return output


def _measured(run_dir: Path, epoch: int | None) -> tuple[str | None, tuple]:
    """(why not, ()) or (None, (epoch, norms)): a run's measurement at `epoch` or its last."""
    path = run_dir / flow.FILE
    if not path.is_file():
        return f"no {flow.FILE} (trained with train.gradient_flow: off, or before its " \
               "first epoch ended)", ()
    try:
        flows = flow.read_flow(path)
    except (ValueError, KeyError, OSError) as err:
        return f"{path} is damaged ({err})", ()
    if not flows:
        return "no epoch measured yet", ()
    at = max(flows) if epoch is None else epoch
    if at not in flows:
        return f"no epoch {at} in {path} (it has 1 to {max(flows)})", ()
    if not np.isfinite(flows[at]).any():
        return f"epoch {at} has no finite norm", ()
    try:
        _config(run_dir)
    except SeqtrainError as err:
        return str(err), ()
    return None, (at, flows[at])


def _colors(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis" if count > 10 else "tab10"]
    return [cmap(i / max(count - 1, 1)) if count > 10 else cmap(i) for i in range(count)]


def _axes(ax, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
