"""Experiment configs: pydantic models, YAML loading and `--set key.path=value` overrides.

Configs store names (`cell: lstm`), never classes; `models.py` maps names to Keras
layers. Loading collects every problem (with its dotted path, YAML line, bad value and
what is allowed) and raises one `ConfigError`. No TensorFlow here.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from seqtrain.data import get_task, task_names, task_params_models
from seqtrain.data.registry import unknown_name_message
from seqtrain.errors import ConfigError
from seqtrain.fields import (
    DropoutRate,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    ShrinkFactor,
)

CELLS = ("simple_rnn", "lstm", "gru")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "hard_sigmoid", "elu", "selu", "gelu", "softsign",
               "silu", "linear")

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_DEVICE_PATTERN = re.compile(r"auto|cpu|gpu(:[0-9]+(,[0-9]+)*)?")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("none", "mirrored")
# Keras 3 `model.fit` under MultiWorkerMirroredStrategy fails upstream; trials scale out instead.
MULTI_WORKER_MESSAGE = (
    "got 'multi_worker'; Keras 3's model.fit fails under MultiWorkerMirroredStrategy "
    "(https://github.com/keras-team/keras/issues/20585, open), so seqtrain does not offer it. "
    "Use distribution: mirrored for the GPUs of one machine, and spread trials over machines "
    "with `seqtrain sweep --executor ray`"
)

class ModelConfig(Section):
    """The recurrent network: `num_layers` layers of one cell, then the task's head."""

    cell: Literal[CELLS] = Field(  # type: ignore[valid-type]
        "lstm", description="Recurrent cell: Keras SimpleRNN, LSTM or GRU."
    )
    units: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        64, description="Units (state size) of each recurrent layer: one number for every "
        "layer, or a list with one per layer (num_layers then follows the list)."
    )
    num_layers: PositiveInt = Field(1, description="Number of stacked recurrent layers.")
    bidirectional: bool = Field(
        False, description="Wrap each recurrent layer in Bidirectional: read the sequence "
        "both ways and concatenate the two outputs."
    )
    dropout: DropoutRate = Field(
        0.0, description="Dropout on each recurrent layer's inputs, in [0, 1)."
    )
    recurrent_dropout: DropoutRate = Field(
        0.0, description="Dropout on the recurrent state, in [0, 1); above 0 rules out the "
        "cuDNN kernel on a GPU."
    )
    activation: Literal[ACTIVATIONS] = Field(  # type: ignore[valid-type]
        "tanh", description="Activation of the recurrent cells (Keras name)."
    )
    recurrent_activation: Literal[ACTIVATIONS] = Field(  # type: ignore[valid-type]
        "sigmoid", description="Gate activation of LSTM and GRU cells; SimpleRNN has no gates."
    )
    embedding_dim: PositiveInt | None = Field(
        None, description="Learn an Embedding of this size for symbol (token) inputs; null "
        "feeds them one-hot (text tasks, which always embed their words: 64)."
    )
    unroll: bool = Field(
        False, description="Unroll the recurrence: faster for short sequences, more memory, and "
        "the model then reads only its training length."
    )
    attention: Literal["none", "additive", "dot"] = Field(
        "none", description="Per-sequence heads: pool the last recurrent layer's outputs over "
        "time with learned attention (additive: Bahdanau's score; dot: a learned query) "
        "instead of reading its last state; none reads the last state."
    )
    reset_after: bool = Field(
        True, description="GRU only: apply the reset gate after the recurrent matrix product "
        "(Keras' default, cuDNN-compatible); false applies it before, as Cho et al. (2014)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        given = self.model_fields_set
        if isinstance(self.units, list):
            if "num_layers" in given and self.num_layers != len(self.units):
                raise ValueError(
                    f"units lists {len(self.units)} layers but num_layers is {self.num_layers}; "
                    "give one unit count per layer, or leave num_layers out"
                )
            self.__dict__["num_layers"] = len(self.units)  # not re-validated: it agrees
        # A resolved config spells every field out, so only a changed value is a mistake.
        if self.cell == "simple_rnn" and self.recurrent_activation != "sigmoid":
            raise ValueError("recurrent_activation applies to the gates of lstm and gru; "
                             "simple_rnn has none: remove it")
        if self.cell != "gru" and not self.reset_after:
            raise ValueError(f"reset_after applies to gru only, not {self.cell}: remove it")
        return self

    @property
    def layer_units(self) -> list[int]:
        """Units of each recurrent layer, first to last."""
        if isinstance(self.units, list):
            return list(self.units)
        return [self.units] * self.num_layers


class EarlyStoppingConfig(Section):
    """Stop when `train.monitor` has not improved for `patience` epochs."""

    patience: PositiveInt = Field(5, description="Epochs without improvement before stopping.")
    min_delta: NonNegativeFloat = Field(
        0.0, description="Smallest change of the monitored value that counts as improvement."
    )


def _yaml_switch(on: str):
    """A switch's names back from booleans: YAML 1.1 reads a bare `off` (and `on`) as one."""
    def named(value: Any) -> Any:
        if isinstance(value, bool):
            return on if value else "off"
        return value

    return BeforeValidator(named)


class TrainConfig(Section):
    """How `model.fit` runs."""

    epochs: PositiveInt = Field(10, description="Number of passes over the training split.")
    batch_size: PositiveInt = Field(64, description="Sequences per gradient step.")
    optimizer: Literal[OPTIMIZERS] = Field(  # type: ignore[valid-type]
        "adam", description="Keras optimizer, by name."
    )
    learning_rate: PositiveFloat = Field(
        0.001, description="Optimizer learning rate, > 0."
    )
    clipnorm: PositiveFloat | None = Field(
        None, description="Clip each gradient to this L2 norm; null for no clipping."
    )
    clipvalue: PositiveFloat | None = Field(
        None, description="Clip each gradient element to [-clipvalue, clipvalue]; null for none."
    )
    weight_decay: NonNegativeFloat | None = Field(
        None, description="Decoupled weight decay; null keeps the optimizer's default (0 for "
        "all but adamw, 0.004 for adamw)."
    )
    monitor: str = Field(
        "val_loss", description="The epoch value that picks best.keras and drives early "
        "stopping and reduce_on_plateau: loss or a metric the task logs (accuracy; mae or "
        "mse for regression), with or without val_. Accuracy is maximised, the others "
        "minimised."
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop early when train.monitor stops improving; null trains all "
        "epochs."
    )
    lr_schedule: Literal["constant", "cosine", "reduce_on_plateau"] = Field(
        "constant", description="constant; cosine: decay to min_learning_rate over all "
        "epochs; reduce_on_plateau: multiply by plateau_factor when train.monitor stalls."
    )
    min_learning_rate: NonNegativeFloat = Field(
        0.0, description="Floor of the cosine and reduce_on_plateau schedules."
    )
    plateau_factor: ShrinkFactor = Field(
        0.5, description="reduce_on_plateau: factor applied to the learning rate, in (0, 1)."
    )
    plateau_patience: PositiveInt = Field(
        2, description="reduce_on_plateau: epochs without improvement before a reduction."
    )
    steps_per_execution: PositiveInt = Field(
        16,
        description="Batches run per compiled call (Keras steps_per_execution): fewer "
        "Python round trips, the same results.",
    )
    jit_compile: bool = Field(
        False, description="Compile the training step with XLA. Needs runtime.deterministic: "
        "false, since op determinism turns XLA off."
    )
    shuffle: bool = Field(
        True, description="Visit the training split in a new order every epoch, derived from "
        "(seed, epoch) so that a resumed run sees the same order."
    )
    checkpoint_every: PositiveInt = Field(
        1, description="Epochs between resumable checkpoints (the last epoch always saves)."
    )
    backup_every_steps: PositiveInt | None = Field(
        None, description="Also save a resumable checkpoint every this many batches inside an "
        "epoch (rounded up to steps_per_execution); null for none."
    )
    tensorboard: bool = Field(
        True, description="Write TensorBoard event files under RUN_DIR/tensorboard/."
    )
    gradient_flow: Annotated[Literal["epoch", "off"], _yaml_switch("epoch")] = Field(
        "epoch", description="epoch: after each epoch, measure how the loss gradient reaches "
        "each time step on a fixed validation batch (gradient_flow.csv, gradient_flow.png) and "
        "warn of vanishing or exploding gradients; off: skip it."
    )

    @model_validator(mode="after")
    def _one_clipping(self) -> TrainConfig:
        if self.clipnorm is not None and self.clipvalue is not None:
            raise ValueError(f"clipnorm ({self.clipnorm}) and clipvalue ({self.clipvalue}) are "
                             "both set; Keras clips one way only: keep one, set the other null")
        return self


class RuntimeConfig(Section):
    """How TensorFlow is set up, and seqtrain's CPU speed layer (`seqtrain.tuning`)."""

    cpu_tuning: Annotated[Literal["auto", "off"], _yaml_switch("auto")] = Field(
        "auto", description="auto: on a CPU, seqtrain's speed layer (streams, recurrent_loop, "
        "threads, warm_validation), when the installed Keras and TensorFlow are versions it "
        "is tested with; off: plain Keras. Results agree to float32 rounding."
    )
    intra_op_threads: PositiveInt | None = Field(
        None, description="CPU threads inside one operation (a matrix product). null: 1 under "
        "streams or for small recurrent products (which split badly over cores), else "
        "TensorFlow's choice."
    )
    inter_op_threads: PositiveInt | None = Field(
        None, description="Operations run at once on the CPU; null lets TensorFlow choose."
    )

    cpu_devices: PositiveInt = Field(
        1, description="Split the CPU into this many logical devices: the replicas of "
        "distribution: mirrored on a machine without GPUs, to try a multi-device setup."
    )
    streams: Union[Literal["auto"], PositiveInt] = Field(
        "auto", description="On a CPU, split each batch into this many parts that run through "
        "the model side by side, one thread each. auto: one per core (up to 2) for "
        "mid-sized recurrent products, else 1; a GPU runs 1."
    )
    recurrent_loop: Literal["auto", "keras"] = Field(
        "auto", description="auto: on a CPU, run recurrent layers with seqtrain's step, Keras's "
        "cell arithmetic with faster products (float32; not with recurrent_dropout); keras: "
        "Keras's own loop. A GPU runs Keras's (cuDNN)."
    )
    deterministic: bool = Field(
        True,
        description="Enable TensorFlow op determinism: same config and seed on the same "
        "machine give the same metrics.",
    )
    warm_validation: bool = Field(
        True, description="Trace the validation step in a background thread while the first "
        "training call runs: a shorter first epoch, the same results. Ignored under "
        "distribution: mirrored."
    )

    @model_validator(mode="after")
    def _streams_need_tuning(self) -> RuntimeConfig:
        if self.cpu_tuning == "off" and self.streams not in ("auto", 1):
            raise ValueError(f"streams: {self.streams} needs the speed layer that "
                             "cpu_tuning: off turns off; use auto or 1, or cpu_tuning: auto")
        return self

    @field_validator("streams", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"got {value!r}; expected auto or a whole number >= 1")


TaskData = Annotated[Union[tuple(task_params_models())], Field(discriminator="task")]


class ExperimentConfig(Section):
    """One experiment: what data, what model, how to train it."""

    name: str = Field(description="Experiment name, used in the run directory's name.")
    seed: Annotated[NonNegativeInt, Field(le=2**32 - 1)] = Field(
        42, description="Seeds the data, the weights and dropout."
    )
    device: str = Field("auto", description="Where to train: auto (the first GPU, else the CPU), "
                        "cpu, gpu, gpu:N, or gpu:N,M,... (needs distribution: mirrored).")
    distribution: str = Field(
        "none", description="none: one device; mirrored: tf.distribute.MirroredStrategy over "
        "the selected GPUs (all visible ones for auto or gpu), or over runtime.cpu_devices "
        "logical CPUs, with train.batch_size as the global batch."
    )
    precision: Literal[PRECISIONS] = Field(  # type: ignore[valid-type]
        "float32", description="Mixed precision: the recurrent layers compute in 16 bits, "
        "weights and the output layer stay float32; mixed_float16 needs a GPU."
    )
    data: TaskData = Field(description="The task (`task:` picks it) and its parameters.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The network.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="TensorFlow.")

    @field_validator("name")
    @classmethod
    def _filesystem_safe(cls, value: str) -> str:
        if not _NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"got {value!r}; use 1 to 80 letters, digits, '.', '_' or '-', starting "
                "with a letter or digit (it becomes part of the run directory's name)"
            )
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)

    @field_validator("distribution")
    @classmethod
    def _known_distribution(cls, value: str) -> str:
        if value == "multi_worker":
            raise ValueError(MULTI_WORKER_MESSAGE)
        if value not in DISTRIBUTIONS:
            raise ValueError(f"got {value!r}; expected none or mirrored")
        return value

    @model_validator(mode="after")
    def _devices_fit_distribution(self) -> ExperimentConfig:
        if self.distribution == "none":
            if "," in self.device:
                raise ValueError(f"device {self.device!r} names several GPUs; set "
                                 "distribution: mirrored to train on them together")
            if self.runtime.cpu_devices > 1:
                raise ValueError(f"runtime.cpu_devices: {self.runtime.cpu_devices} splits the "
                                 "CPU for distribution: mirrored; set it, or cpu_devices: 1")
            return self
        if self.runtime.streams not in ("auto", 1):
            raise ValueError(f"runtime.streams: {self.runtime.streams} splits the batch on one "
                             "device; under distribution: mirrored the replicas split it "
                             "already: use auto or 1")
        if self.train.steps_per_execution > 1:
            if "steps_per_execution" in self.train.model_fields_set:
                raise ValueError(
                    f"train.steps_per_execution: {self.train.steps_per_execution} fails under "
                    "distribution: mirrored with more than one replica (Keras 3 multi-step "
                    "loop over a distributed iterator: 'You must feed a value for placeholder "
                    "tensor'); use 1, or leave it out")
            self.train.steps_per_execution = 1  # the default, 16, does not work here
        return self

    @model_validator(mode="after")
    def _monitor_is_logged(self) -> ExperimentConfig:
        kind = self.data.task_kind()
        if self.train.monitor not in monitors(kind):
            which = f"task {self.data.task!r} ({kind}) logs" if kind else "expected one of"
            raise ValueError(f"train.monitor: got {self.train.monitor!r}; {which} "
                             f"{', '.join(monitors(kind))}")
        return self

    @model_validator(mode="after")
    def _xla_needs_nondeterminism(self) -> ExperimentConfig:
        if self.train.jit_compile and self.runtime.deterministic:
            raise ValueError(
                "train.jit_compile: true needs runtime.deterministic: false; TensorFlow's op "
                "determinism turns XLA off, and Keras would silently train without it"
            )
        return self

    @model_validator(mode="after")
    def _attention_needs_sequence_head(self) -> ExperimentConfig:
        if self.model.attention != "none" and self.data.per_step() is True:
            raise ValueError(attention_refusal(self.model.attention, self.data.task))
        return self

    @model_validator(mode="after")
    def _embedding_needs_symbols(self) -> ExperimentConfig:
        if self.model.embedding_dim is None and self.data.default_embedding_dim():
            self.model.embedding_dim = self.data.default_embedding_dim()  # text: words
        if self.model.embedding_dim and self.data.vocabulary_size() == 0:
            raise ValueError(
                f"model.embedding_dim needs symbol inputs, but task {self.data.task!r} (with "
                "these settings) has real-valued inputs; remove embedding_dim, or use a task "
                "with symbols (shifted_digit with encoding onehot, copy_memory)"
            )
        return self


def attention_refusal(attention: str, task: str, path: str | None = None) -> str:
    """Why `model.attention` cannot apply to task `task` with these settings.

    `path`: the data file whose targets are per step, when the file (not the config) told.
    """
    which = (f"{path} (task {task!r}) holds a target at every step" if path
             else f"task {task!r} (with these settings) predicts at every step")
    return (f"model.attention: {attention} pools a sequence into one vector for a "
            f"per-sequence head, but {which}; use attention: none, or a per-sequence task")


def monitors(kind: str | None) -> list[str]:
    """The epoch values a task of `kind` logs (any kind's when None): what train.monitor takes."""
    metrics = {"classification": ["accuracy"], "regression": ["mae", "mse"],
               None: ["accuracy", "mae", "mse"]}[kind]
    return ["val_loss", *(f"val_{m}" for m in metrics), "loss", *metrics]


def monitor_mode(monitor: str) -> str:
    """`max` for accuracies, `min` for losses and errors: always explicit, never guessed."""
    return "max" if monitor.endswith("accuracy") else "min"


def check_device(value: str) -> str:
    """`value` if it names a device seqtrain can select, else a ValueError saying what can."""
    if not _DEVICE_PATTERN.fullmatch(value):
        raise ValueError(f"got {value!r}; expected auto, cpu, gpu, gpu:N or gpu:N,M,... "
                         "(N = 0, 1, ...)")
    return value


# --- loading ---------------------------------------------------------------------------

KeyPath = tuple[str, ...]


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment file.

    Args:
        path: The YAML file.
        overrides: `key.path=value` strings; values are parsed as YAML scalars.

    Returns:
        The validated config, defaults filled in.

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, or does not validate;
            the message lists every problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found; check the path"]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), [f"cannot read it: {err}"]) from None
    raw, lines, problems = _parse_yaml(text, str(path))
    config = validate_config(raw, lines, overrides, source=str(path), problems=problems)
    # Data files are found from the config's folder, wherever seqtrain is started.
    return config.model_copy(update={"data": config.data.resolve_paths(path.parent.resolve())})


def validate_config(
    raw: dict[str, Any],
    lines: dict[KeyPath, int],
    overrides: Iterable[str] = (),
    source: str = "<config>",
    problems: Iterable[str] = (),
) -> ExperimentConfig:
    """Apply overrides to a parsed YAML mapping and validate it (see `load_config`).

    `problems` already found (keys given twice, say) are reported with the rest.
    """
    problems = list(problems)
    overridden: dict[KeyPath, str] = {}
    for override in overrides:
        problem = _apply_override(raw, override, overridden)
        if problem:
            problems.append(problem)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        problems.extend(_describe(error, raw, lines, overridden)
                        for error in _one_union_branch(err.errors(), raw))
    if problems:
        raise ConfigError(source, problems)
    return config


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML, in field order, loadable by `load_config`."""
    resolved = config.model_dump(mode="json")
    # Pydantic puts inherited fields first; the shared sampling keys read better last.
    data = resolved["data"]
    data.update({key: data.pop(key) for key in ("num_samples", "split") if key in data})
    return yaml.safe_dump(resolved, sort_keys=False)


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[KeyPath, int], list[str]]:
    """Parse with the safe loader: the mapping, each key path's line, keys given twice."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(source, ["the file is empty; expected a mapping with at least "
                                       "`name:` and `data: {task: ...}`"])
        lines: dict[KeyPath, int] = {}
        problems = _index_lines(node, (), lines)
        raw = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(p) for p in (err.context, err.problem) if p)
        if isinstance(err, yaml.constructor.ConstructorError):
            problem += " (only plain YAML is allowed: no tags such as !!python/...)"
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(source, [f"invalid YAML: {err}"]) from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"expected a mapping of keys (name:, data:, ...) at the top "
                                   f"level, got {_type_name(raw)}"])
    return raw, lines, problems


def _index_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> list[str]:
    """Record the 1-based line of every key; report keys given twice in one mapping."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join((*prefix, key))
                problems.append(f"{dotted} (line {line}): key given twice in one mapping; keep one")
            seen.add(key)
            lines.setdefault((*prefix, key), line)
            problems += _index_lines(value_node, (*prefix, key), lines)
    return problems


def _apply_override(raw: dict[str, Any], override: str, overridden: dict[KeyPath, str]) -> str:
    """Set one `key.path=value` in `raw`; return a problem description, or '' if it applied."""
    key, sep, value_text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        return f"--set {override!r}: expected key.path=value, for example train.epochs=5"
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as err:
        return f"--set {override!r}: the value is not a YAML scalar ({err})"
    path = tuple(key.split("."))
    node = raw
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            parent = ".".join(path[: depth + 1])
            return f"--set {override!r}: {parent} is a value, not a section, so it has no keys"
        node = child
    node[path[-1]] = value
    overridden[path] = override
    return ""


# --- describing validation errors ------------------------------------------------------

# Names from other libraries that difflib cannot match to ours.
_ALIASES = {
    "lr": "learning_rate", "hidden_size": "units", "n_layers": "num_layers",
    "layers": "num_layers", "cell_type": "cell", "rnn": "cell", "seq_len": "sequence_length",
    "bs": "batch_size", "n_epochs": "epochs", "optim": "optimizer", "clip": "clipnorm",
}

_BOUND_WORDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
                "less_than": "<"}


def _describe(error: dict[str, Any], raw: dict[str, Any], lines: dict[KeyPath, int],
              overridden: dict[KeyPath, str]) -> str:
    """One pydantic error as `path (where): got X; expected Y. Did you mean Z?`."""
    loc = _strip_task_tag(tuple(str(part) for part in error["loc"]))
    kind, value = error["type"], error.get("input")
    dotted = _dotted(error["loc"])

    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], raw)
        message = f"unknown key {loc[-1]!r}"
        if allowed:
            message += f"; allowed here: {', '.join(allowed)}"
            close = difflib.get_close_matches(loc[-1], allowed, n=1) or [
                alias for alias in [_ALIASES.get(loc[-1])] if alias in allowed]
            if close:
                message += f". Did you mean {close[0]!r}?"
    elif kind == "missing":
        message = "required but missing"
        if loc == ("data",):
            message += f"; add `data:` with `task:` one of {', '.join(task_names())}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        dotted = _dotted((*loc, "task"))
        tag = error.get("ctx", {}).get("tag")
        if kind == "union_tag_not_found":
            message = f"required but missing; expected one of: {', '.join(task_names())}"
        else:
            message = unknown_name_message("task", tag, task_names())
        loc = (*loc, "task")
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        message = f"got {_shown(value)}; expected one of: {', '.join(choices)}"
        same_but_case = [c for c in choices if c.lower() == str(value).lower()]
        close = same_but_case or difflib.get_close_matches(str(value), choices, n=1)
        if close:
            message += f". Did you mean {close[0]!r}?"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        message = f"got {_shown(value)}; expected a whole number"
    elif kind in ("float_type", "float_parsing"):
        message = f"got {_shown(value)}; expected a number"
    elif kind == "finite_number":
        message = f"got {_shown(value)}; expected a finite number"
    elif kind in ("bool_type", "bool_parsing"):
        message = f"got {_shown(value)}; expected true or false"
    elif kind in ("string_type",):
        message = f"got {_shown(value)}; expected a string"
    elif kind in _BOUND_WORDS:
        bound = next(iter(error["ctx"].values()))
        # The field's type, not the value's: `weight_decay: -1` is a float field's number.
        noun = "a whole number" if isinstance(bound, int) else "a number"
        message = f"got {_shown(value)}; expected {noun} {_BOUND_WORDS[kind]} {_number(bound)}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"got {_shown(value)}; expected a section of key: value lines"
    elif kind == "list_type":
        items = _list_items(loc, raw)
        message = f"got {_shown(value)}; expected a list of {items}"
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value):
            message += f", such as [{value}]"
    elif kind in ("too_short", "too_long"):
        ctx = error.get("ctx", {})
        count = ctx.get("actual_length", len(value) if isinstance(value, list) else 0)
        limit = ctx.get("min_length" if kind == "too_short" else "max_length", 0)
        message = (f"got {'an empty list' if not count else _items(count)}; expected "
                   f"{'at least' if kind == 'too_short' else 'at most'} {_items(limit)}")
    elif kind in ("value_error", "assertion_error"):
        message = str(error["ctx"]["error"])
        named = _NAMED_KEY.match(message) if not loc else None
        if named:  # a rule across sections, told at the key it names (and that key's line)
            loc, dotted = tuple(named[1].split(".")), named[1]
            message = message[named.end():]
    else:  # a type no config field has yet: still in seqtrain's words
        message = f"got {_shown(value)}; {_plain(error['msg'])}"
    return f"{dotted} ({_where(loc, lines, overridden)}): {message}"


# A top-level rule's message that starts with the key it is about: `model.attention: ...`.
_NAMED_KEY = re.compile(r"^((?:model|data|train|runtime)\.[a-z_]+)(?::\s*|\s+(?=\S))")
_UNION_TAG = re.compile(r"^(int|float|str|bool|list\[.*\]|constrained-.*|function-.*)$")


def _one_union_branch(errors: list[dict[str, Any]], raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Keep only the errors of the union branch the user meant.

    For a field of several types (`units: 64` or `units: [64, 32]`) pydantic reports every
    branch; the list branch is meant when a list was given, the other one otherwise.
    """
    kept = []
    for error in errors:
        loc = tuple(error["loc"])
        tag = next((i for i, part in enumerate(loc) if isinstance(part, str)
                    and _UNION_TAG.match(part) and i > 0), None)
        if tag is None:
            kept.append(error)
            continue
        given = raw
        for part in _strip_task_tag(tuple(str(p) for p in loc[:tag])):
            given = given.get(part) if isinstance(given, dict) else None
        if str(loc[tag]).startswith("list") == isinstance(given, list):
            kept.append({**error, "loc": loc[:tag] + loc[tag + 1:]})
    return kept


def _strip_task_tag(loc: KeyPath) -> KeyPath:
    """Drop the discriminator tag pydantic inserts: ('data', 'shifted_digit', 'x') -> data.x."""
    if len(loc) > 1 and loc[0] == "data" and loc[1] in task_names():
        return (loc[0], *loc[2:])
    return loc


def _where(loc: KeyPath, lines: dict[KeyPath, int], overridden: dict[KeyPath, str]) -> str:
    """Where a path's value came from: the --set that wrote it, or its nearest YAML line.

    A section's error (`model`: units and num_layers disagree) also names the --sets that
    wrote inside it: they may be the cause.
    """
    for depth in range(len(loc), 0, -1):  # a --set is applied after the file: it wins
        if loc[:depth] in overridden:
            return f"--set {overridden[loc[:depth]]}"
    where = next((f"line {lines[loc[:depth]]}" for depth in range(len(loc), 0, -1)
                  if loc[:depth] in lines), "not in the file")
    inside = [f"--set {text}" for path, text in overridden.items()
              if loc and len(path) > len(loc) and path[:len(loc)] == loc]
    if not inside:
        return where
    return ", ".join(inside if where == "not in the file" else [where, *inside])


def _dotted(loc: tuple) -> str:
    """A pydantic location as the user writes it: `data.columns[0]`, `model.units`."""
    loc = _strip_task_tag(tuple(str(part) for part in loc)) if loc else ()
    text = ""
    for part in loc:
        text += f"[{part}]" if part.isdigit() and text else ("." if text else "") + part
    return text or "(top level)"


def _items(count: int) -> str:
    return f"{count} item" + ("" if count == 1 else "s")


def _number(bound: Any) -> str:
    """A bound as the YAML would write it: 0 rather than 0.0, 4294967295 in full."""
    if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e15:
        return str(int(bound))
    return str(bound)


_PYDANTIC_PHRASES = [(re.compile(pattern), words) for pattern, words in (
    (r"^Input should be ", "expected "), (r"^[A-Z]\w* should ", "it should "),
    (r"^Value error, ", ""),
    (r"^Field required$", "required but missing"),
    (r"^Extra inputs are not permitted$", "unknown key"),
    (r"\bvalid ", ""), (r"\binput\b", "value"),
)]


def _plain(message: str) -> str:
    """Pydantic's wording of an error we have no own words for, in seqtrain's."""
    for pattern, words in _PYDANTIC_PHRASES:
        message = pattern.sub(words, message)
    return message


def _list_items(loc: KeyPath, raw: dict[str, Any]) -> str:
    """What the list field at `loc` holds, in words: `strings`, `whole numbers`, ..."""
    model = section_model(loc[:-1], raw)
    field = model.model_fields.get(loc[-1]) if model and loc else None
    annotation = field.annotation if field else None
    for arm in _arms(annotation):  # `list[str] | None` too
        if typing.get_origin(arm) is list:
            (item,) = typing.get_args(arm) or (Any,)
            while typing.get_origin(item) is Annotated:
                item = typing.get_args(item)[0]
            return {str: "strings", int: "whole numbers", float: "numbers",
                    bool: "true or false values"}.get(item, "values")
    return "values"


def _arms(annotation: Any) -> tuple:
    """The types of a union annotation (`X | None`), or the annotation alone."""
    import types

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def section_model(loc: KeyPath, raw: dict[str, Any]) -> type[BaseModel] | None:
    """The model of the section at `loc` (the task's own for `data`), or None."""
    model: type[BaseModel] | None = ExperimentConfig
    for part in loc:
        if model is None:
            return None
        if model is ExperimentConfig and part == "data":
            task = raw.get("data", {}).get("task") if isinstance(raw.get("data"), dict) else None
            model = get_task(task).params if task in task_names() else None
            continue
        field = model.model_fields.get(part)
        arms = _arms(field.annotation) if field else ()
        model = next((arm for arm in arms  # a section, or a section or null
                      if isinstance(arm, type) and issubclass(arm, BaseModel)), None)
    return model


def _allowed_keys(loc: KeyPath, raw: dict[str, Any]) -> list[str]:
    """Field names of the section at `loc`, looked up from the models and the raw task."""
    model = section_model(loc, raw)
    return list(model.model_fields) if model else []


def _shown(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, (dict, list)):
        return _type_name(value)
    return repr(value)


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)
