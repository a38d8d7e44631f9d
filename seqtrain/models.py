"""Config names to Keras objects: the `Sequential` model, its optimizer, loss and metrics.

Imported only after `runtime.prepare()`; the Keras imports live inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqtrain.config import ModelConfig, TrainConfig
from seqtrain.data import TaskSpec

if TYPE_CHECKING:
    import keras

# Config names -> Keras class names, looked up lazily (configs store names, never classes).
CELL_LAYERS = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
OPTIMIZER_CLASSES = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adamw": "AdamW"}


def build_model(config: ModelConfig, spec: TaskSpec, name: str = "seqtrain") -> keras.Sequential:
    """`Input` -> `num_layers` recurrent layers -> per-step or per-sequence softmax `Dense`.

    Args:
        config: The `model:` section.
        spec: The task's input shape and head.
        name: The Keras model's name.

    Returns:
        An uncompiled `keras.Sequential`.
    """
    import keras

    cell = getattr(keras.layers, CELL_LAYERS[config.cell])
    layers: list = [keras.Input(shape=(spec.timesteps, spec.features), name="sequence")]
    for index in range(config.num_layers):
        is_last = index == config.num_layers - 1
        layers.append(
            cell(
                config.units,
                activation=config.activation,
                dropout=config.dropout,
                return_sequences=spec.per_step or not is_last,
                name=f"{config.cell}_{index + 1}",
            )
        )
    activation = "softmax" if spec.kind == "classification" else None
    layers.append(keras.layers.Dense(spec.output_units, activation=activation, name="head"))
    return keras.Sequential(layers, name=name.replace(".", "_"))


def compile_model(model: keras.Model, config: TrainConfig, spec: TaskSpec) -> None:
    """Compile with the configured optimizer and the task's loss and metric.

    Classification: cross-entropy and accuracy; regression: mean squared error and mean
    absolute error. Steps with sample weight 0 (targets that do not exist) count neither
    in the loss nor in the metric: the loss is averaged over the sample weights, not over
    all steps, and the metric is a weighted one.
    """
    import keras

    optimizer = getattr(keras.optimizers, OPTIMIZER_CLASSES[config.optimizer])(
        learning_rate=config.learning_rate, clipnorm=config.clipnorm
    )
    if spec.kind == "classification":
        loss = keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")
        metric = keras.metrics.SparseCategoricalAccuracy(name=spec.metric)
    else:
        loss = keras.losses.MeanSquaredError(reduction="mean_with_sample_weight")
        metric = keras.metrics.MeanAbsoluteError(name=spec.metric)
    model.compile(optimizer=optimizer, loss=loss, weighted_metrics=[metric],
                  steps_per_execution=config.steps_per_execution)
