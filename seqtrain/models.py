"""Config names to Keras objects: the `Sequential` model, its optimizer, loss and metrics.

Imported only after `runtime.prepare()`; the Keras imports live inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqtrain.config import ModelConfig, TrainConfig, attention_refusal
from seqtrain.data import TaskParams, TaskSpec
from seqtrain.data.preprocessing import PAD
from seqtrain.data.registry import loss_divisor
from seqtrain.errors import DataError

if TYPE_CHECKING:
    import keras

# Config names -> Keras class names, looked up lazily (configs store names, never classes).
CELL_LAYERS = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
OPTIMIZER_CLASSES = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adamw": "AdamW"}
# Gates per cell: the recurrent kernel of a layer of `units` is units x (GATES * units).
GATES = {"simple_rnn": 1, "gru": 3, "lstm": 4}


def build_model(config: ModelConfig, spec: TaskSpec, name: str = "seqtrain",
                precision: str = "float32") -> keras.Sequential:
    """`Input` -> `num_layers` recurrent layers [-> attention pooling] -> softmax `Dense`.

    The head reads every step (per-step tasks), the last recurrent layer's last state, or,
    with `model.attention`, the attention-weighted sum of its outputs over all steps.

    Args:
        config: The `model:` section.
        spec: The task's input shape and head.
        name: The Keras model's name.
        precision: The recurrent layers' dtype policy (`float32`, `mixed_float16`,
            `mixed_bfloat16`). Masking and the output layer stay float32: the padding
            value -1e9 is -inf in float16 (and -inf x 0 is NaN), and a 16-bit softmax
            or loss loses the small probabilities.

    Returns:
        An uncompiled `keras.Sequential`.
    """
    import keras

    cell = getattr(keras.layers, CELL_LAYERS[config.cell])
    # Any length (None) unless unrolled: a model trained on 20 steps can be evaluated on
    # 200 (`seqtrain eval --set data.sequence_length=200`).
    steps = spec.timesteps if config.unroll else None
    if spec.tokens:
        layers: list = [keras.Input(shape=(steps,), dtype="int32", name="tokens"),
                        # Token 0 is padding when the task masks: skipped, as Masking would.
                        keras.layers.Embedding(spec.tokens, config.embedding_dim, name="embedding",
                                               mask_zero=spec.masked, dtype=precision)]
    else:
        layers = [keras.Input(shape=(steps, spec.features), name="sequence")]
        if spec.masked:
            layers.append(keras.layers.Masking(mask_value=PAD, name="masking"))
    options: dict = {"dtype": precision, "activation": config.activation, "dropout": config.dropout,
                     "recurrent_dropout": config.recurrent_dropout, "unroll": config.unroll}
    if config.cell != "simple_rnn":
        options["recurrent_activation"] = config.recurrent_activation
    if config.cell == "gru":
        options["reset_after"] = config.reset_after
    units = config.layer_units
    pooled = config.attention != "none"
    for index, width in enumerate(units):
        is_last = index == len(units) - 1
        layer = cell(width, return_sequences=spec.per_step or pooled or not is_last,
                     name=f"{config.cell}_{index + 1}", **options)
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index + 1}",
                                               dtype=precision)
        layers.append(layer)
    if pooled:
        from seqtrain.layers import AttentionPooling

        # float32 like the head: the scores' softmax must not lose small weights.
        layers.append(AttentionPooling(config.attention, name="attention", dtype="float32"))
    activation = "softmax" if spec.kind == "classification" else None
    layers.append(keras.layers.Dense(spec.output_units, activation=activation, name="head",
                                     dtype="float32"))
    if spec.output_scale:
        # A standardised target, returned in its own units by a fixed affine map: the head
        # learns z ~ N(0, 1) while outputs, metrics and saved models speak the user's units.
        layers.append(keras.layers.Rescaling(list(spec.output_scale), list(spec.output_offset),
                                             name="output_scaling", dtype="float32"))
    return keras.Sequential(layers, name=name.replace(".", "_"))


def check_attention(config: ModelConfig, spec: TaskSpec, params: TaskParams) -> None:
    """`model.attention` needs a per-sequence head: the data may tell only when it is built.

    Raises:
        DataError: Attention is on and the task's data file holds per-step targets.
    """
    if config.attention != "none" and spec.per_step:
        files = params.files()
        raise DataError(attention_refusal(config.attention, params.task,
                                          str(files[0]) if files else None))


def compile_model(model: keras.Model, config: TrainConfig, spec: TaskSpec,
                  steps_per_epoch: int = 1, precision: str = "float32",
                  legacy_metrics: bool = False) -> None:
    """Compile with the configured optimizer and the task's loss and metric.

    Classification: cross-entropy and accuracy; regression: mean squared error and mean
    absolute error. Steps with sample weight 0 (targets that do not exist) count neither
    in the loss nor in the metric: the loss is averaged over the sample weights, not over
    all steps, and the metric is a weighted one. A regression model that rescales its
    output (`TaskSpec.output_scale`) reports `mse` and `mae` in the target's units, and a
    loss divided by the target's variance: the mean squared error of the standardised
    target, whose gradients do not depend on the target's units. A cosine schedule decays
    over `steps_per_epoch * config.epochs` steps to `config.min_learning_rate`. Under
    mixed_float16 the optimizer scales the loss (`LossScaleOptimizer`), so that small
    float16 gradients do not underflow to zero. `legacy_metrics` compiles a regression
    model as runs made before `preprocessing.json` were (`mae` alone), so that their saved
    metric states and `metrics.csv` columns still fit when they resume.
    """
    import keras

    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=steps_per_epoch * config.epochs,
            alpha=config.min_learning_rate / config.learning_rate)
    options = {"learning_rate": learning_rate, "clipnorm": config.clipnorm,
               "clipvalue": config.clipvalue}
    if config.weight_decay is not None:
        options["weight_decay"] = config.weight_decay
    optimizer = getattr(keras.optimizers, OPTIMIZER_CLASSES[config.optimizer])(**options)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    loss, weight = task_loss(spec)
    loss_weights = None if weight == 1.0 else weight
    if spec.kind == "classification":
        metrics = [keras.metrics.SparseCategoricalAccuracy(name=spec.metric)]
    else:
        metrics = [keras.metrics.MeanAbsoluteError(name=spec.metric)]
        if not legacy_metrics:
            metrics.append(keras.metrics.MeanSquaredError(name="mse"))
    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights,
                  weighted_metrics=metrics, steps_per_execution=config.steps_per_execution,
                  jit_compile=config.jit_compile)
    # The optimizer's slots (Adam's moments), now: Keras creates them in the first traced
    # training step, and a tf.function that creates variables is traced twice, so every run
    # would trace its whole training step (the recurrent loops and their gradients) twice.
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def task_loss(spec: TaskSpec) -> tuple[keras.losses.Loss, float]:
    """The task's training loss and the weight it is multiplied by (`compile_model`)."""
    import keras

    if spec.kind == "classification":
        return keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight"), 1.0
    weight = 1.0 / loss_divisor(spec.output_scale) if spec.output_scale else 1.0
    return keras.losses.MeanSquaredError(reduction="mean_with_sample_weight"), weight


def recurrent_layers(model: keras.Model) -> list:
    """The `keras.layers.RNN` layers of `model`, those inside `Bidirectional` too."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            found += [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, keras.layers.RNN):
            found.append(layer)
    return found
