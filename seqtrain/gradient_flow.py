"""Gradient flow through time: what a run's probe recorded, and what it warns about.

After each epoch (`train.gradient_flow: epoch`) the run measures, on a fixed batch of its
validation split, how strongly the loss gradient reaches each time step's input,
`||dL/dx_t||`. A plain recurrent cell multiplies that gradient by its recurrent Jacobian
once per step back in time, so it shrinks (or grows) geometrically with the distance to
the end of the sequence; LSTM and GRU gates can keep it alive. `gradient_probe.py` takes
the measurement; this module keeps the records and reads them (no TensorFlow: `plot`
reads them too).

Records, in the run directory:

- `gradient_flow.csv`: `epoch, step, norm`, one row per epoch and time step (1-based). A
  step that is padding in every sequence of the probe has no row.
- `metrics.csv`, per epoch: `gradient_norm` (the weights' global gradient norm before
  clipping), `gradient_clipped` (the share of weight tensors the optimizer's clipping
  cuts), `gradient_first_to_last` (first step's norm over the last step's) and
  `gradient_norm_<layer>` (each layer's weight gradient norm).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqtrain import atomic

FILE = "gradient_flow.csv"
PLOT = "gradient_flow.png"
PROBE_SEQUENCES = 32  # at most: enough for a stable mean, a small share of an epoch
PROBE_STREAM = 7  # the probe's random stream, apart from the data's and the model's
MAX_STEPS = 10**7  # a step number beyond this in gradient_flow.csv is damage

NORM = "gradient_norm"
CLIPPED = "gradient_clipped"
RATIO = "gradient_first_to_last"
LAYER_PREFIX = "gradient_norm_"

# The warnings' thresholds.
VANISHED = 1e-6  # first step's norm below this share of the last step's
VANISHED_EPOCHS = 3  # ... in this many epochs in a row
EXPLODED = 100.0  # a global norm this many times the median of the epochs before
CLIPPED_EPOCHS = 5  # clipping cut most weight gradients in this many epochs in a row
NEAR_BASELINE = 0.9  # val_loss above this share of the baseline's loss: nothing learned yet


def is_gradient_column(name: str) -> bool:
    """Whether a metrics.csv column is one of the probe's figures (an epoch fact, no metric)."""
    return name.startswith("gradient_")


def probe_indices(num_sequences: int, seed: int) -> np.ndarray:
    """The validation sequences of the probe batch: drawn from the seed alone, sorted.

    The same in every epoch and in every session of a resumed run.
    """
    size = min(PROBE_SEQUENCES, num_sequences)
    rng = np.random.default_rng([seed, PROBE_STREAM])
    return np.sort(rng.choice(num_sequences, size=size, replace=False)).astype(np.int64)


def first_to_last(norms: np.ndarray) -> float:
    """The first measured step's norm over the last one's (NaN marks unmeasured steps)."""
    measured = norms[np.isfinite(norms)] if np.isfinite(norms).any() else norms
    if len(measured) == 0:
        return math.nan
    first, last = float(measured[0]), float(measured[-1])
    if last == 0.0:
        return math.nan if first == 0.0 else math.inf
    return first / last


def read_flow(path: Path, epochs: int | None = None) -> dict[int, np.ndarray]:
    """`gradient_flow.csv` as {epoch: norms by step}, NaN at steps without a row.

    Args:
        path: The file; missing means no epochs.
        epochs: Keep only epochs 1..`epochs` (a resumed run drops what its state lost).

    Raises:
        ValueError: A damaged file, naming it and the line.
    """
    if not path.exists():
        return {}
    rows = []
    try:
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames != ["epoch", "step", "norm"]:
                raise ValueError(f"its header is {reader.fieldnames}, not epoch,step,norm")
            for row in reader:
                epoch, step = int(row["epoch"]), int(row["step"])
                if not (1 <= epoch and 1 <= step <= MAX_STEPS) or None in row.values():
                    raise ValueError(f"line {reader.line_num} is {list(row.values())}")
                rows.append((epoch, step, float(row["norm"])))
    except (ValueError, TypeError, csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged ({err})") from None
    steps = max((step for _, step, _ in rows), default=0)
    flows: dict[int, np.ndarray] = {}
    for epoch, step, norm in rows:
        if epochs is not None and epoch > epochs:
            continue
        flows.setdefault(epoch, np.full(steps, np.nan))[step - 1] = norm
    return flows


def write_flow(path: Path, flows: dict[int, np.ndarray], steps: np.ndarray | None = None) -> None:
    """Replace `gradient_flow.csv` with `flows`, atomically.

    `steps` (booleans) are the steps that get a row, NaN norms (a diverged run) included;
    by default the steps with a number: padding has no row.
    """
    buffer = io.StringIO()
    buffer.write("epoch,step,norm\n")
    for epoch in sorted(flows):
        norms = flows[epoch]
        written = ~np.isnan(norms) if steps is None else steps[:len(norms)]
        for step in np.flatnonzero(written):
            buffer.write(f"{epoch},{step + 1},{norms[step]:.9g}\n")
    atomic.write_text(path, buffer.getvalue())


@dataclass(frozen=True)
class GradientWarning:
    """A diagnosis of a run's gradients, first holding at `epoch`."""

    kind: str  # vanishing_gradient, exploding_gradient, clipping
    epoch: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "epoch": self.epoch, "message": self.message}


def diagnose(rows: list[dict[str, float]], baseline_loss: float | None,
             train: dict[str, Any], cell: str, ended: bool = False,
             check_vanishing: bool = True) -> list[GradientWarning]:
    """The warnings `rows` (metrics.csv's, with the probe's figures) call for, each once.

    A pure function of the rows, so a resumed run finds the same warnings at the same
    epochs. "Stuck" below means val_loss at or above `NEAR_BASELINE` times the baseline's
    loss, or times the first epoch's val_loss: the baseline is measured on the test split,
    which on small data may lie well off the validation split's. Three warnings:

    - vanishing: the first step gets less than `VANISHED` of the last step's gradient in
      `VANISHED_EPOCHS` epochs in a row, all stuck. A plain cell (`simple_rnn`) is told as
      soon as that holds. A gated cell only when the run ends so (`ended`): an LSTM or GRU
      commonly sits on such a plateau for many epochs before its gates open a path for the
      gradient, and then learns;
    - exploding: the global norm is not finite, or `EXPLODED` times the median of the
      epochs before (at least two);
    - clipping: clipping cut most weight gradients in `CLIPPED_EPOCHS` epochs in a row, all
      stuck (not told beside a vanishing gradient, the likelier cause).

    Args:
        rows: metrics.csv's rows, epochs in order.
        baseline_loss: The task's naive baseline's loss, if it has one.
        train: The `train:` section (learning rate and clipping, for the remedies).
        cell: `model.cell`.
        ended: The run has ended with the last row (its epochs done, or stopped early).
        check_vanishing: False where the first step's share cannot tell a vanishing
            gradient: with per-step targets (each step has its own nearby target) and
            bidirectional layers (the backward direction reaches the first step at once).
    """
    found: dict[str, GradientWarning] = {}
    vanished = clipped = 0
    norms: list[float] = []
    first: float | None = None  # the first epoch's val_loss
    for index, row in enumerate(rows):
        if first is None and "val_loss" in row:
            first = row["val_loss"]
        if RATIO not in row:  # an epoch of an older release, resumed by this one
            vanished = clipped = 0
            continue
        epoch = int(row["epoch"])
        val_loss = row.get("val_loss", math.nan)
        stuck = any(reference is not None and not val_loss < NEAR_BASELINE * reference
                    for reference in (baseline_loss, first))
        ratio, norm = row[RATIO], row.get(NORM, math.nan)
        vanished = vanished + 1 if stuck and ratio < VANISHED else 0
        clipped = clipped + 1 if stuck and row.get(CLIPPED, 0.0) > 0.5 else 0
        last = ended and index == len(rows) - 1
        if (check_vanishing and vanished >= VANISHED_EPOCHS
                and "vanishing_gradient" not in found
                and (cell == "simple_rnn" or last)):
            found["vanishing_gradient"] = GradientWarning("vanishing_gradient", epoch, (
                f"vanishing gradient: the first step gets {ratio:.1e} of the last step's "
                f"gradient for {vanished} epochs while val_loss stays near the baseline "
                "or the first epoch's; "
                + ("use a gated cell (model.cell: lstm or gru) or shorter sequences"
                   if cell == "simple_rnn" else
                   "train longer (more train.epochs, or a larger "
                   "train.early_stopping.patience: the gates may yet open a path), or try "
                   "shorter sequences or another train.learning_rate")))
        earlier = [n for n in norms if math.isfinite(n)]
        exploded = not math.isfinite(norm) or (
            len(earlier) >= 2 and norm > EXPLODED * float(np.median(earlier)))
        if exploded and "exploding_gradient" not in found:
            remedy = (f"lower train.learning_rate (now {train.get('learning_rate')})"
                      + ("" if train.get("clipnorm") else " or set train.clipnorm (e.g. 1.0)"))
            found["exploding_gradient"] = GradientWarning("exploding_gradient", epoch, (
                f"exploding gradient: the global gradient norm is {norm:.3g}"
                + (f", {norm / float(np.median(earlier)):.0f}x the earlier epochs'"
                   if math.isfinite(norm) and earlier else "") + f"; {remedy}"))
        norms.append(norm)
        if (clipped >= CLIPPED_EPOCHS and "clipping" not in found
                and "vanishing_gradient" not in found):
            how = (f"clipnorm {train.get('clipnorm')}" if train.get("clipnorm")
                   else f"clipvalue {train.get('clipvalue')}")
            found["clipping"] = GradientWarning("clipping", epoch, (
                f"clipping: {how} cuts most weight gradients for {clipped} epochs while "
                "val_loss stays near the baseline or the first epoch's; lower "
                "train.learning_rate, or raise the clipping threshold"))
    return sorted(found.values(), key=lambda w: w.epoch)


def layer_columns(row: dict[str, float]) -> list[str]:
    """The per-layer norm columns of a metrics.csv row, in the model's layer order."""
    return [key for key in row if key.startswith(LAYER_PREFIX)]


def epoch_columns(row: dict[str, float]) -> list[str]:
    """The probe's metrics.csv columns present in `row`, in a fixed order."""
    fixed = [key for key in (NORM, CLIPPED, RATIO) if key in row]
    return fixed + layer_columns(row)
