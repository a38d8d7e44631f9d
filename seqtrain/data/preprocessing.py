"""What a run learned from its data, and how it is applied: `preprocessing.json`.

One document per run says how raw inputs become model inputs (encodings, statistics of the
training split, padding and masking, window length) and how the model's outputs become
predictions in the user's units. `build_dataset` completes it, `seqtrain run` stores it in
the run directory, and `eval`, `predict` and `export` apply it from there: nothing is
fitted again on data the model is asked about.

    {"format": 1, "task": "csv_series",
     "input":  {"encoding": "features", "columns": [...], "normalization": "window",
                "scale": [...], "sequence_length": 48, ...},   # task-specific
     "model_input": {"name": "sequence", "dtype": "float32", "features": 2, ...},
     "output": {"kind": "regression", "per_step": false, "names": ["load_t+1", ...],
                "offset": [...], "scale": [...], "add_level": "load"},
     "steps": ["...", ...]}                                    # the same, in words

Regression targets are standardised inside the model: a fixed `Rescaling` after the head
returns `offset + scale * z`, so the model's outputs are already in the target's units (or,
with `add_level`, the change from the window's last value, to which that value is added).
No TensorFlow here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from seqtrain.data.registry import Dataset, TaskParams

FORMAT = 1
PAD = -1e9  # the value of every feature of a padded or masked step (see `TaskSpec.masked`)


def complete(params: TaskParams, dataset: Dataset, token_inputs: bool) -> dict[str, Any]:
    """The full `preprocessing.json` of `dataset`, from what its task recorded and its spec."""
    spec = dataset.spec
    given = dataset.preprocessing or {}
    inputs = {"encoding": "features", **given.get("input", {})}
    if token_inputs:
        inputs["encoding"] = "tokens"
    model_input: dict[str, Any] = {
        "name": "tokens" if spec.tokens else "sequence",
        "dtype": "int32" if spec.tokens else "float32",
        "features": None if spec.tokens else spec.features,
        "timesteps_in_training": spec.timesteps,
    }
    if spec.masked:  # token 0 is padding (an `Embedding` with mask_zero), else PAD
        model_input["padding_value"] = 0 if spec.tokens else PAD
    output: dict[str, Any] = {"kind": spec.kind, "per_step": spec.per_step}
    if spec.kind == "classification":
        output["classes"] = list(range(spec.num_classes))
    else:
        width = spec.output_dim
        output["names"] = ["y"] if width == 1 else [f"y_{k}" for k in range(width)]
        output["offset"] = list(spec.output_offset) or [0.0] * width
        output["scale"] = list(spec.output_scale) or [1.0] * width
        output["add_level"] = None
    output.update(given.get("output", {}))
    document = {"format": FORMAT, "task": params.task, "input": inputs,
                "model_input": model_input, "output": output}
    document["steps"] = describe_steps(document)
    return document


def target_statistics(y: np.ndarray, sample_weight: np.ndarray | None = None
                      ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each target column's mean, and one standard deviation pooled over the columns.

    One scale for every column keeps the loss exactly the mean squared error of the
    standardised target (see `models.compile_model`): a scale per column would weigh each
    column's error by its own variance. Columns are the horizons of one forecast target,
    or an npz file's target columns (give those similar units).

    Args:
        y: Targets (N, K) or, per step, (N, T, K).
        sample_weight: None, or (N, T) for per-step targets: steps of weight 0 are left out.

    Returns:
        (offset, scale): one value per column; a constant target gets scale 1.
    """
    import numpy as np

    values = y.reshape(-1, y.shape[-1]).astype(np.float64)
    if sample_weight is not None:
        values = values[sample_weight.reshape(-1) > 0]
    mean = values.mean(axis=0)
    std = float(np.sqrt(((values - mean) ** 2).mean()))
    if not std > 1e-12 * max(1.0, float(abs(mean).max())):
        std = 1.0
    return tuple(float(v) for v in mean), (std,) * len(mean)


def stored_target_statistics(preprocessing: dict | None
                             ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (offset, scale) a run stored, or None when it stored none (a new run)."""
    if not preprocessing:
        return None
    output = preprocessing.get("output", {})
    if "offset" not in output:
        return None
    return tuple(output["offset"]), tuple(output["scale"])


def is_legacy(preprocessing: dict | None) -> bool:
    """Whether `preprocessing` describes a run made before `preprocessing.json` existed."""
    return bool(preprocessing) and preprocessing.get("format", FORMAT) == 0


def legacy(task: str, normalization: dict | None) -> dict[str, Any]:
    """The preprocessing of a run made before `preprocessing.json` existed.

    Such runs trained on raw targets (their models have no rescaling layer) and stored only
    the feature statistics of `csv_series`, in `normalization.json`.
    """
    inputs: dict[str, Any] = {"normalization": "none"}
    if normalization:
        inputs = {"normalization": "standard", "mean": normalization["mean"],
                  "std": normalization["std"]}
    return {"format": 0, "task": task, "input": inputs,
            "output": {"offset": [], "scale": [], "add_level": None}}


MISSING_WORDS = {
    "error": "refused (the input must have none)",
    "zero": "replaced by 0",
    "ffill": "replaced by the value of the step (row) before in the same feature; a gap at "
             "the first step becomes 0",
    "mask": "the step is masked: all its features get the padding value",
}


def missing_step(what: str, policy: str) -> str:
    """A `steps` line: what happens to missing values under `policy`."""
    return f"{what}: {MISSING_WORDS[policy]}"


def describe_steps(document: dict[str, Any]) -> list[str]:
    """`preprocessing.json` in words: what to do to a raw input, and to the model's output."""
    inputs, model_input, output = document["input"], document["model_input"], document["output"]
    steps = list(inputs.get("reading", []))
    encoding = inputs.get("encoding")
    if encoding == "onehot":
        steps.append(f"encode each symbol s as a one-hot vector of {inputs['vocabulary']} "
                     "float32 values (1.0 at index s)")
    elif encoding == "tokens":
        steps.append(f"feed the symbols as int32 tokens 0..{inputs.get('vocabulary', 0) - 1} "
                     "(the model embeds them)")
    normalization = inputs.get("normalization")
    if normalization == "standard" and "mean" in inputs:
        steps.append("standardise each input column: (value - input.mean[c]) / input.std[c]")
    elif normalization == "window":
        steps.append("make each window relative to its last row: (value - value at the last "
                     "row) / input.scale[c]")
    if "padding_value" in model_input and encoding != "text":  # text: said in its reading
        steps.append(f"right-pad sequences to one length (and mark missing steps) with "
                     f"{model_input['padding_value']:g} in every feature: the model skips "
                     "those steps")
    name = model_input["name"]
    steps.append(f"feed the batch as the model's input {name!r} ({model_input['dtype']}, shape "
                 + ("(batch, steps)" if name == "tokens" else
                    f"(batch, steps, {model_input['features']})") + ")")
    if output["kind"] == "classification":
        steps.append("the output holds one probability per class (softmax); the prediction "
                     "is the class of the largest")
    else:
        steps.append("the output is in the target's units (the model applies output.offset "
                     "and output.scale itself)")
        if output.get("add_level"):
            steps.append(f"add the window's last observed {output['add_level']!r} to every "
                         "output: the model forecasts the change from it")
    return steps
