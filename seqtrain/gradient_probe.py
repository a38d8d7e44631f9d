"""The gradient probe: how the loss gradient reaches each time step, measured each epoch.

At the end of every epoch, with the weights of that moment, one forward and backward pass
on a fixed batch of the validation split (`gradient_flow.probe_indices`) gives:

- `||dL/dx_t||` for every step t: the gradient with respect to the recurrent layers'
  input (an `Embedding`'s output for token inputs), where L is the loss summed over the
  probe's sequences, so each sequence's own loss drives its own inputs. Per step, the root
  mean square over the sequences that have that step (padding excluded);
- the gradient of the training loss (the batch mean, as `fit` takes it) with respect to
  the weights: its global norm before clipping, each layer's norm, and the share of weight
  tensors that the optimizer's `clipnorm` (per tensor, as Keras clips) or `clipvalue`
  would cut.

The pass runs in inference mode: no dropout, no random draw, so training itself is the
same with the probe as without it.

Imported only after `runtime.prepare()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqtrain import gradient_flow as flow
from seqtrain.data import Split, TaskSpec
from seqtrain.data.preprocessing import PAD
from seqtrain.models import task_loss


@dataclass(frozen=True)
class Measurement:
    """One epoch's probe: per-step input norms and the weights' gradient figures."""

    steps: np.ndarray  # (T,), NaN where every probe sequence is padding
    norm: float
    clipped: float
    layers: dict[str, float]

    def columns(self) -> dict[str, float]:
        """The figures `metrics.csv` gets for the epoch."""
        return {flow.NORM: self.norm, flow.CLIPPED: self.clipped,
                flow.RATIO: flow.first_to_last(self.steps),
                **{f"{flow.LAYER_PREFIX}{name}": value for name, value in self.layers.items()}}


def real_steps(x: np.ndarray, spec: TaskSpec) -> np.ndarray:
    """(N, T) booleans: which steps of `x` are data rather than padding."""
    if not spec.masked:
        return np.ones(x.shape[:2], dtype=bool)
    if spec.tokens:
        return x != 0
    return ~(x == PAD).all(axis=-1)


def input_layers(model: keras.Model) -> int:
    """How many of the model's first layers make the recurrent layers' input.

    An `Embedding` (token inputs) or a `Masking` layer: the probe differentiates with
    respect to their output, the sequence the recurrent layers read.
    """
    first = model.layers[0] if model.layers else None
    return 1 if isinstance(first, (keras.layers.Embedding, keras.layers.Masking)) else 0


class GradientProbe:
    """Measures a model's gradient flow on one fixed batch.

    Args:
        model: The compiled model.
        spec: The task's spec (padding, token inputs, loss).
        split: The validation split.
        indices: The probe's sequences in it (`gradient_flow.probe_indices`).
    """

    def __init__(self, model: keras.Model, spec: TaskSpec, split: Split, indices: np.ndarray):
        self.model, self.indices = model, indices
        batch = split.take(indices)
        self.real = real_steps(batch.x, spec)
        self._loss, self._weight = task_loss(spec)
        self._arrays = (tf.constant(batch.x), tf.constant(batch.y),
                        tf.constant(np.ones(batch.y.shape[:2] if spec.per_step else
                                            batch.y.shape[:1], np.float32)
                                    if batch.sample_weight is None else batch.sample_weight))
        self._front = input_layers(model)
        self._compute = tf.function(self._gradients)

    def _gradients(self, x, y, sample_weight):
        model = self.model
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            sequence = x
            for layer in model.layers[:self._front]:
                sequence = layer(sequence)  # the output keeps its padding mask
            if self._front == 0:
                sequence = tf.convert_to_tensor(sequence)
            tape.watch(sequence)
            outputs = sequence
            for layer in model.layers[self._front:]:
                outputs = layer(outputs, training=False)
            loss = self._loss(y, outputs, sample_weight) * self._weight
        # One backward pass for both. The input's gradient is taken for the summed loss
        # (each sequence's own loss for its own inputs): the mean's, times the batch size.
        gradients = tape.gradient(loss, [sequence, *variables])
        inputs = tf.cast(gradients[0], tf.float32) * tf.cast(tf.shape(x)[0], tf.float32)
        per_step = tf.reduce_sum(tf.square(inputs), axis=-1)
        # An embedding's gradient comes as IndexedSlices; a weight the loss does not reach
        # (none in seqtrain's models) as None.
        weights = [tf.zeros_like(v, tf.float32) if g is None
                   else tf.cast(tf.convert_to_tensor(g), tf.float32)
                   for v, g in zip(variables, gradients[1:], strict=True)]
        return per_step, weights

    def measure(self) -> Measurement:
        """The probe's figures for the model's current weights."""
        per_step, gradients = self._compute(*self._arrays)
        per_step = np.asarray(per_step, np.float64)  # (N, T) squared norms
        counts = self.real.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            steps = np.sqrt(np.where(self.real, per_step, 0.0).sum(axis=0) / counts)
        steps[counts == 0] = np.nan
        squares = [float(np.sum(np.square(np.asarray(g, np.float64)))) for g in gradients]
        layers = {}
        owner = {id(v): layer.name for layer in self.model.layers
                 for v in layer.trainable_variables}
        for variable, square in zip(self.model.trainable_variables, squares, strict=True):
            name = owner.get(id(variable), "other")
            layers[name] = layers.get(name, 0.0) + square
        return Measurement(steps=steps, norm=float(np.sqrt(sum(squares))),
                           clipped=self._clipped(gradients, squares),
                           layers={name: float(np.sqrt(s)) for name, s in layers.items()})

    def _clipped(self, gradients, squares: list[float]) -> float:
        """The share of weight tensors whose gradient the optimizer's clipping cuts.

        Keras clips each tensor to `clipnorm`, or each element to `clipvalue`.
        """
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        if not squares:
            return 0.0
        if optimizer.clipnorm:
            cut = [np.sqrt(s) > optimizer.clipnorm for s in squares]
        elif optimizer.clipvalue:
            cut = [float(np.max(np.abs(np.asarray(g)), initial=0.0)) > optimizer.clipvalue
                   for g in gradients]
        else:
            return 0.0
        return float(np.mean(cut))


class GradientFlow(keras.callbacks.Callback):
    """Runs the probe after each epoch: `gradient_flow.csv`, metrics.csv's figures, warnings.

    Place it before `EpochLog`, which then records the figures it adds to the epoch logs
    (and counts its time in `epoch_seconds`).

    Args:
        probe: The probe.
        path: `gradient_flow.csv`; a resumed run's earlier epochs are kept from it.
        epochs_done: Epochs the run's state covers: later rows of the file are dropped.
        rows: metrics.csv's rows so far (`EpochLog.rows`, read at each epoch's end).
        baseline_loss: The task's naive baseline's loss, for the warnings.
        train: The `train:` section as a dict, for the warnings' remedies and epochs.
        cell: `model.cell`.
    """

    def __init__(self, probe: GradientProbe, path: Path, epochs_done: int,
                 rows: list[dict[str, float]], baseline_loss: float | None, train: dict,
                 cell: str):
        super().__init__()
        self.probe, self.path = probe, path
        self.flows = flow.read_flow(path, epochs_done)
        self.rows = rows
        self.baseline_loss, self.train, self.cell = baseline_loss, train, cell
        self.warnings = flow.diagnose(rows, baseline_loss, train, cell)
        self._new: dict[int, list[str]] = {}
        self.seconds: list[float] = []  # each measurement's, this session (the first traces)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        started = time.perf_counter()
        measured = self.probe.measure()
        self.seconds.append(time.perf_counter() - started)
        logs.update(measured.columns())
        self.flows[epoch + 1] = measured.steps
        flow.write_flow(self.path, self.flows)
        current = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        self._diagnose([*self.rows, current], ended=epoch + 1 >= self.train["epochs"])

    def _diagnose(self, rows: list[dict[str, float]], ended: bool) -> None:
        before = {w.kind for w in self.warnings}
        self.warnings = flow.diagnose(rows, self.baseline_loss, self.train, self.cell, ended)
        self._new.setdefault(int(rows[-1]["epoch"]), []).extend(
            w.message for w in self.warnings if w.kind not in before)

    def conclude(self) -> None:
        """The run has ended (its epochs, early stopping, pruning): warnings of an ended run."""
        if self.rows:
            self._diagnose(self.rows, ended=True)

    def cost(self) -> dict[str, float]:
        """What the probe cost this session: its first call (with tracing) and the rest's median."""
        if not self.seconds:
            return {}
        rest = self.seconds[1:]
        return {"first_seconds": round(self.seconds[0], 4),
                "seconds": round(float(np.median(rest)), 4) if rest else None}

    def notes(self, epoch: int) -> list[str]:
        """Warnings first raised at the 1-based `epoch`, for its progress line.

        Called after every other callback's `on_epoch_end`: an epoch where early stopping
        (or a search's pruner) ended the run gets the warnings of an ended run.
        """
        if (self.model is not None and self.model.stop_training and self.rows
                and int(self.rows[-1]["epoch"]) == epoch):
            self.conclude()
        return self._new.get(epoch, [])
