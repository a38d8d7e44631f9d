"""`seqtrain plan`: what a run will do, before it trains.

Data shapes, the model's layers and parameters, FLOPs per training step and per epoch,
the device, and for each recurrent layer whether TensorFlow's cuDNN kernel will run it on
a GPU, or which setting rules it out.

FLOPs are counted from the layer sizes, as 2 per multiply-add of the matrix products
(element-wise gate arithmetic is left out: it is a few percent for these sizes):

    forward, per sequence step:  gates * 2 * units * (inputs + units)
                                 gates = 1 (SimpleRNN), 3 (GRU), 4 (LSTM); x2 if bidirectional
    attention pooling, per step: additive 2 * (D * D + D) + 2 * D, dot 2 * D + 2 * D
                                 (D: the last recurrent layer's output width)
    head (Dense):                2 * inputs * outputs, per step or once per sequence
    training step:               3 * forward * batch_size  (backward ~ 2x forward)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from seqtrain.config import ExperimentConfig
from seqtrain.data import Dataset
from seqtrain.models import GATES
from seqtrain.tuning import OFF, Tuning


@dataclass
class LayerPlan:
    """One recurrent layer: its size, its FLOPs and whether cuDNN can run it."""

    name: str
    units: int
    inputs: int
    forward_flops_per_step: int
    cudnn: bool
    cudnn_blockers: list[str] = field(default_factory=list)


def cudnn_blockers(config: ExperimentConfig, masked_mid_sequence: bool) -> list[str]:
    """The settings that keep TensorFlow's cuDNN kernel off this model's recurrent layers.

    Keras uses cuDNN for LSTM and GRU on a visible GPU only with tanh activation, sigmoid
    recurrent activation, no recurrent dropout, no unrolling, biases, GRU reset_after, and
    masks that are strictly right-padded.
    """
    model = config.model
    blockers = []
    if model.cell == "simple_rnn":
        blockers.append("cell: simple_rnn has no cuDNN kernel (use lstm or gru)")
    if model.activation != "tanh":
        blockers.append(f"activation: {model.activation} (cuDNN needs tanh)")
    if model.cell != "simple_rnn" and model.recurrent_activation != "sigmoid":
        blockers.append(f"recurrent_activation: {model.recurrent_activation} (cuDNN needs "
                        "sigmoid)")
    if model.recurrent_dropout > 0:
        blockers.append(f"recurrent_dropout: {model.recurrent_dropout} (cuDNN needs 0)")
    if model.unroll:
        blockers.append("unroll: true (cuDNN needs false)")
    if model.cell == "gru" and not model.reset_after:
        blockers.append("reset_after: false (cuDNN implements the reset_after GRU)")
    if masked_mid_sequence:
        blockers.append("missing: mask masks steps inside sequences (cuDNN needs masks that "
                        "are strictly right-padded)")
    return blockers


def layer_plans(config: ExperimentConfig, dataset: Dataset) -> list[LayerPlan]:
    """Size, FLOPs and cuDNN eligibility of each recurrent layer."""
    model, spec = config.model, dataset.spec
    masked_mid = getattr(config.data, "missing", None) == "mask"
    blockers = cudnn_blockers(config, masked_mid)
    inputs = model.embedding_dim if spec.tokens else spec.features
    plans = []
    for index, units in enumerate(model.layer_units):
        directions = 2 if model.bidirectional else 1
        flops = directions * GATES[model.cell] * 2 * units * (inputs + units)
        plans.append(LayerPlan(f"{model.cell}_{index + 1}", units, inputs, flops,
                               not blockers, blockers))
        inputs = units * directions
    return plans


@dataclass
class AttentionPlan:
    """The attention pooling (`model.attention`): its parameters and FLOPs."""

    score: str
    inputs: int
    params: int
    forward_flops_per_step: int


def attention_plan(config: ExperimentConfig) -> AttentionPlan | None:
    """Size and FLOPs of the attention pooling over the last recurrent layer; None: none.

    Additive (`v^T tanh(W h_t + b)`, W of D x D): D * D + 2 * D parameters; dot (a query
    of D): D. Every step also adds its weighted output to the sum: 2 * D FLOPs.
    """
    model = config.model
    if model.attention == "none":
        return None
    width = model.layer_units[-1] * (2 if model.bidirectional else 1)
    if model.attention == "additive":
        params, score = width * width + 2 * width, 2 * (width * width + width)
    else:
        params, score = width, 2 * width
    return AttentionPlan(model.attention, width, params, score + 2 * width)


def make_plan(config: ExperimentConfig, dataset: Dataset, devices: list[str],
              num_params: int, tuning: Tuning = OFF) -> dict[str, Any]:
    """Everything `seqtrain plan` prints, as a JSON-ready dict (also `plan.json` of a run).

    `devices` and `tuning` are what `seqtrain.tuning.select` gave the run.
    """
    spec, train = dataset.spec, config.train
    layers = layer_plans(config, dataset)
    last = config.model.layer_units[-1] * (2 if config.model.bidirectional else 1)
    head = 2 * last * spec.output_units * (spec.timesteps if spec.per_step else 1)
    attention = attention_plan(config)
    per_step = sum(layer.forward_flops_per_step for layer in layers) + (
        attention.forward_flops_per_step if attention else 0)
    forward = per_step * spec.timesteps + head
    step = 3 * forward * train.batch_size
    batches = dataset.train.num_batches(train.batch_size)
    on_gpu = any("GPU" in device for device in devices)
    return {
        "data": {name: {"x": list(split.x.shape), "y": list(split.y.shape)}
                 for name, split in (("train", dataset.train), ("val", dataset.val),
                                     ("test", dataset.test))},
        "task": {"kind": spec.kind, "per_step": spec.per_step, "metric": spec.metric},
        "num_params": num_params,
        "layers": [asdict(layer) for layer in layers],
        "attention": asdict(attention) if attention else None,
        "flops": {"forward_per_sequence": forward, "train_step": step,
                  "epoch": step * batches, "batches_per_epoch": batches},
        "devices": devices,
        "strategy": ("one device" if config.distribution == "none" else
                     f"MirroredStrategy, {len(devices)} replicas, "
                     f"{train.batch_size / len(devices):g} sequences each per step"),
        "precision": config.precision,
        "steps_per_execution": train.steps_per_execution,
        "cpu_tuning": tuning.cpu_tuning,
        "streams": tuning.streams,
        "recurrent_loop": tuning.recurrent_loop,
        "cudnn": {"on_gpu": on_gpu, "eligible": all(layer.cudnn for layer in layers),
                  "will_run": on_gpu and all(layer.cudnn for layer in layers)},
    }


def gist(plan: dict[str, Any]) -> str:
    """The plan in one line, printed by `seqtrain run` before it trains."""
    flops = plan["flops"]
    cudnn = plan["cudnn"]
    kernel = ("cuDNN" if cudnn["will_run"] else
              "cuDNN-eligible (no GPU)" if cudnn["eligible"] else "no cuDNN")
    return (f"plan: {plan['num_params']:,} params, {flops['train_step'] / 1e9:.3g} GFLOP per "
            f"step, {flops['epoch'] / 1e9:.3g} GFLOP per epoch ({flops['batches_per_epoch']} "
            f"steps), {', '.join(plan['devices'])}, {kernel}"
            + ("" if plan["strategy"] == "one device" else f", {plan['strategy']}")
            + (", seqtrain's recurrent step" if plan["recurrent_loop"] == "seqtrain" else "")
            + ("" if plan["streams"] == 1 else f", {plan['streams']} batch streams")
            + (", plain Keras (cpu_tuning: off)" if plan["cpu_tuning"] == "off" else "")
            + ("" if plan["precision"] == "float32" else f", {plan['precision']}"))


def measure(config: ExperimentConfig, dataset: Dataset, model, steps: int = 24) -> dict:
    """Time real training steps (after a warm-up that traces the graph) and estimate the run.

    Args:
        config: The experiment.
        dataset: Its data.
        model: The compiled model; its weights change (this is a throwaway copy).
        steps: Steps timed.

    Returns:
        Seconds per step, sequences per second, estimated seconds per epoch and per run.
    """
    import time

    from seqtrain.pipeline import evaluation_dataset

    train = config.train
    size = min(len(dataset.train), train.batch_size * steps)
    warm = min(size, train.batch_size * 2)

    def first(n: int):  # the first n training samples, batched as training batches them
        return evaluation_dataset(dataset.train.take(slice(n)), train.batch_size)

    started = time.perf_counter()
    model.fit(first(warm), epochs=1, verbose=0, shuffle=False)
    tracing = time.perf_counter() - started
    batches_timed = first(size)
    started = time.perf_counter()
    model.fit(batches_timed, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    timed = math.ceil(size / train.batch_size)
    per_step = seconds / timed
    batches = dataset.train.num_batches(train.batch_size)
    return {"steps_timed": timed, "seconds_per_step": per_step,
            "sequences_per_second": size / seconds, "tracing_seconds": tracing,
            "epoch_seconds": per_step * batches,
            "run_seconds": tracing + per_step * batches * train.epochs}


def plan_experiment(config: ExperimentConfig, measure_steps: bool = False) -> dict[str, Any]:
    """Build the data and the model of `config` (no training) and plan the run.

    Raises:
        SeqtrainError: A device that is not there, data that cannot be loaded, or a run
            that cannot fit in memory.
    """
    from seqtrain import resources, runtime, tuning
    from seqtrain.data import build_dataset

    devices, chosen = tuning.select(config, tuning.choose(config))
    runtime.seed_everything(config.seed, config.runtime.deterministic)
    resources.check_data(config)
    dataset = build_dataset(config.data, config.seed, bool(config.model.embedding_dim))
    from seqtrain.models import build_model, check_attention, compile_model

    check_attention(config.model, dataset.spec, config.data)
    resources.check_model(config, dataset)

    with runtime.scope(config.distribution, devices):
        model = tuning.install(build_model(config.model, dataset.spec, name=config.name,
                                           precision=config.precision), chosen)
        compile_model(model, config.train, dataset.spec,
                      dataset.train.num_batches(config.train.batch_size), config.precision)
    plan = make_plan(config, dataset, devices.used, model.count_params(), chosen)
    plan["model"] = [{"layer": layer.name, "type": type(layer).__name__,
                      "output": [d if d is not None else None for d in layer.output.shape],
                      "params": layer.count_params()} for layer in model.layers]
    if measure_steps:
        plan["measured"] = measure(config, dataset, model)
    return plan
