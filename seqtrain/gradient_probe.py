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

The pass runs in inference mode, without dropout. Keras's recurrent layers draw their
dropout masks in inference too (and throw them away), which advances the dropout seed
generators: their state is put back after the pass, so training is the same, bit for bit,
with the probe as without it.

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
from seqtrain.state import seed_variables


@dataclass(frozen=True)
class Measurement:
    """One epoch's probe: per-step input norms and the weights' gradient figures."""

    steps: np.ndarray  # (T,), NaN where every probe sequence is padding
    norm: float
    clipped: float
    layers: dict[str, float]
    ratio: float

    def columns(self) -> dict[str, float]:
        """The figures `metrics.csv` gets for the epoch."""
        return {flow.NORM: self.norm, flow.CLIPPED: self.clipped, flow.RATIO: self.ratio,
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
        self.measured = self.real.any(axis=0)  # steps with data in some probe sequence
        self._loss, self._weight = task_loss(spec)
        self._arrays = (tf.constant(batch.x), tf.constant(batch.y),
                        tf.constant(np.ones(batch.y.shape[:2] if spec.per_step else
                                            batch.y.shape[:1], np.float32)
                                    if batch.sample_weight is None else batch.sample_weight))
        self._front = input_layers(model)
        # No autograph: the loop over layers is plain Python, and autograph would re-read
        # this file from disk to convert it.
        self._compute = tf.function(self._gradients, autograph=False)

    def _gradients(self, x, y, sample_weight):
        model = self.model
        variables = model.trainable_variables
        # mixed_float16: the optimizer's loss scale, as training applies it, so that small
        # float16 gradients do not underflow (1.0 for every other optimizer).
        scale = tf.cast(model.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
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
            scaled = loss * tf.cast(scale, loss.dtype)
        # One backward pass for both. The input's gradient is taken for the loss times the
        # number of sequences: for one target per sequence, each sequence's own loss.
        gradients = tape.gradient(scaled, [sequence, *variables])
        inputs = (tf.cast(gradients[0], tf.float32) / scale) * tf.cast(tf.shape(x)[0],
                                                                         tf.float32)
        per_step = tf.reduce_sum(tf.square(inputs), axis=-1)
        weights, clip_norms, clip_values = [], [], []
        for variable, gradient in zip(variables, gradients[1:], strict=True):
            if gradient is None:  # a weight the loss does not reach (none in seqtrain's)
                gradient = tf.zeros_like(variable)
            if isinstance(gradient, tf.IndexedSlices):
                # An embedding's: Keras clips its rows as they come, a token's repeats apart.
                rows = tf.cast(gradient.values, tf.float32) / scale
                gradient = tf.convert_to_tensor(gradient)
            else:
                rows = tf.cast(gradient, tf.float32) / scale
            weights.append(tf.cast(gradient, tf.float32) / scale)
            clip_norms.append(tf.norm(rows))
            clip_values.append(tf.reduce_max(tf.abs(rows)))
        return per_step, weights, clip_norms, clip_values

    def measure(self) -> Measurement:
        """The probe's figures for the model's current weights; no state of training changes."""
        seeds = seed_variables(self.model)
        before = [variable.numpy() for variable in seeds]
        try:
            per_step, gradients, clip_norms, clip_values = self._compute(*self._arrays)
        finally:
            for variable, value in zip(seeds, before, strict=True):
                variable.assign(value)
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
        norm = float(np.sqrt(sum(squares)))
        return Measurement(steps=steps, norm=norm,
                           clipped=self._clipped(np.asarray(clip_norms), np.asarray(clip_values))
                           if np.isfinite(norm) else np.nan,
                           layers={name: float(np.sqrt(s)) for name, s in layers.items()},
                           ratio=self._ratio(per_step, steps))

    def _ratio(self, per_step: np.ndarray, steps: np.ndarray) -> float:
        """`gradient_first_to_last`: the first step's norm over the last step's.

        With padding, sequences end at different steps: the median, over the probe's
        sequences, of each one's first real step over its own last real step (by absolute
        step, a short sequence's large gradient near its end would sit at the early steps).
        """
        if self.real.all():
            return flow.first_to_last(steps)
        ratios = []
        for squares, real in zip(per_step, self.real, strict=True):
            where = np.flatnonzero(real)
            if len(where) >= 2:
                ratios.append(flow.first_to_last(np.sqrt(squares[[where[0], where[-1]]])))
        finite = [r for r in ratios if not np.isnan(r)]
        return float(np.median(finite)) if finite else np.nan

    def _clipped(self, norms: np.ndarray, largest: np.ndarray) -> float:
        """The share of weight tensors whose probe gradient the optimizer's clipping cuts.

        Keras clips each tensor to `clipnorm`, or each element to `clipvalue`.
        """
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        if not len(norms):
            return 0.0
        if optimizer.clipnorm:
            return float(np.mean(norms > optimizer.clipnorm))
        if optimizer.clipvalue:
            return float(np.mean(largest > optimizer.clipvalue))
        return 0.0


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
        check_vanishing: Whether a vanishing gradient can be told from the first step's
            share: not with per-step targets or bidirectional layers (`diagnose`).
    """

    def __init__(self, probe: GradientProbe, path: Path, epochs_done: int,
                 rows: list[dict[str, float]], baseline_loss: float | None, train: dict,
                 cell: str, check_vanishing: bool = True):
        super().__init__()
        self.probe, self.path = probe, path
        self.flows = flow.read_flow(path, epochs_done)
        if self.flows or path.exists():  # drop the epochs the state does not cover
            flow.write_flow(path, self.flows, probe.measured)
        self.rows = rows
        self.baseline_loss, self.train, self.cell = baseline_loss, train, cell
        self.check_vanishing = check_vanishing
        self.warnings = flow.diagnose(rows, baseline_loss, train, cell,
                                      check_vanishing=check_vanishing)
        self._new: dict[int, list[str]] = {}
        self.seconds: list[float] = []  # each measurement's, this session (the first traces)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        started = time.perf_counter()
        measured = self.probe.measure()
        self.seconds.append(time.perf_counter() - started)
        logs.update(measured.columns())
        self.flows[epoch + 1] = measured.steps
        flow.write_flow(self.path, self.flows, self.probe.measured)
        current = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        self._diagnose([*self.rows, current], ended=epoch + 1 >= self.train["epochs"])

    def _diagnose(self, rows: list[dict[str, float]], ended: bool) -> None:
        before = {w.kind for w in self.warnings}
        self.warnings = flow.diagnose(rows, self.baseline_loss, self.train, self.cell, ended,
                                      self.check_vanishing)
        self._new.setdefault(int(rows[-1]["epoch"]), []).extend(
            w.message for w in self.warnings if w.kind not in before)

    def conclude(self) -> None:
        """The run has ended (its epochs, early stopping, pruning): warnings of an ended run."""
        if self.rows:
            self._diagnose(self.rows, ended=True)

    def plottable(self) -> bool:
        """Whether some epoch has a norm to draw (a run diverged in epoch 1 has none)."""
        return any(np.isfinite(norms).any() for norms in self.flows.values())

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
