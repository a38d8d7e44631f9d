"""Your own sequences from a `.npz` file: fixed or variable length, any targets.

    data:
      task: npz
      path: sequences.npz      # relative to the config file's folder
      x: x                     # (N, T) integer tokens or (N, T, F) floats
      y: y                     # (N,) / (N, K) per sequence, (N, T) / (N, T, K) per step
      lengths: lengths         # optional: true lengths, the rest is right-padding

Files load with `allow_pickle=False`. Padded and masked steps hold `PAD` in every feature
and are skipped by a `Masking` layer, so they count neither in the loss nor in the metrics.
Regression targets are standardised with the training split's statistics (inside the
model: see `seqtrain.data.preprocessing`). `seqtrain predict` reads a file with the same
array names (`lengths` optional, `y` not needed) through `read_npz`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from seqtrain.data.preprocessing import (
    PAD,
    missing_step,
    stored_target_statistics,
    target_statistics,
)
from seqtrain.data.registry import (
    Dataset,
    FileTaskParams,
    Split,
    TaskSpec,
    classification_baseline,
    cut,
    integer_array,
    load_npz,
    npz_array,
    register_reader,
    register_task,
    regression_baseline,
)
from seqtrain.errors import DataError

if TYPE_CHECKING:
    import numpy as np


class NpzParams(FileTaskParams):
    """Parameters of `task: npz`."""

    task: Literal["npz"] = Field("npz", description="Task name.")
    x: str = Field("x", description="Inputs: (N, T) integer tokens or (N, T, F) floats.")
    y: str = Field("y", description="Targets: (N,) or (N, K) per sequence, (N, T) or (N, T, K) "
                   "per step.")
    lengths: str | None = Field(
        None, description="Array of true sequence lengths; steps after them are padding."
    )
    kind: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: integer targets are classes, floats are values."
    )
    targets: Literal["auto", "per_sequence", "per_step"] = Field(
        "auto", description="auto: (N, T, ...) targets whose T is the input's are per step, "
        "the others per sequence."
    )
    missing: Literal["error", "mask", "zero", "ffill"] = Field(
        "error", description="NaN in the inputs: error; mask the step; replace by 0; or carry "
        "the last value forward."
    )
    normalization: Literal["standard", "none"] = Field(
        "standard", description="Regression targets: standard: learnt standardised with the "
        "training split's mean and std, reported in their own units; none: as they are."
    )

    def task_kind(self) -> str | None:
        return None if self.kind == "auto" else self.kind

    def per_step(self) -> bool | None:
        return None if self.targets == "auto" else self.targets == "per_step"


TARGET_NORMALIZATION_DESCRIPTION = NpzParams.model_fields["normalization"].description


@register_task("npz", NpzParams)
def npz(params: NpzParams, seed: int, preprocessing: dict | None = None) -> Dataset:
    """Load, check and split a `.npz` file (see the module's docstring)."""
    import numpy as np

    arrays = load_npz(Path(params.path))
    names = [(params.x, params.y)]
    given = [f"{part}_{split}" in arrays for split in ("val", "test") for part in ("x", "y")]
    if any(given) and not all(given):
        raise DataError(f"{params.path}: give x_val, y_val, x_test and y_test together, or "
                        "none and let data.split cut the file")
    if all(given):
        names += [("x_val", "y_val"), ("x_test", "y_test")]
    parts = []
    for x_name, y_name in names:
        x = npz_array(arrays, x_name, params.path)
        y = npz_array(arrays, y_name, params.path)
        lengths = None
        if params.lengths and x_name == params.x:
            lengths = npz_array(arrays, params.lengths, params.path)
        elif params.lengths and f"{params.lengths}_{x_name[2:]}" in arrays:
            lengths = arrays[f"{params.lengths}_{x_name[2:]}"]
        parts.append((x_name, y_name, x, y, lengths))
    vocabulary = max((int(x.max()) + 1 for _, _, x, _, _ in parts
                      if np.issubdtype(x.dtype, np.integer) and x.ndim == 2), default=0)
    kind = params.kind
    if kind == "auto":
        kind = "classification" if np.issubdtype(parts[0][3].dtype, np.integer) else "regression"
    prepared = [prepare_split(params, kind, vocabulary, *part) for part in parts]
    if len(prepared) == 3:
        train, val, test = prepared
    else:
        train, val, test = shuffled_split(params, prepared[0], seed)
    per_step = train.y.ndim >= 2 if kind == "classification" else train.y.ndim == 3
    spec = TaskSpec(
        timesteps=train.x.shape[1], features=train.x.shape[2], per_step=per_step, kind=kind,
        num_classes=int(max(s.y.max() for s in (train, val, test))) + 1
        if kind == "classification" else 0,
        output_dim=0 if kind == "classification" else train.y.shape[-1],
        masked=bool(params.lengths) or params.missing == "mask",
        vocabulary=vocabulary,
    )
    spec = with_target_statistics(params, spec, train, preprocessing)
    inputs = {"source": "npz", "x": params.x, "lengths": params.lengths,
              "encoding": "onehot" if vocabulary else "features", "vocabulary": vocabulary,
              "missing": params.missing,
              "reading": [f"read array {params.x!r} of the .npz file: (N, T) integer tokens "
                          "or (N, T, F) numbers" + (f", and the true lengths {params.lengths!r}"
                                                    " (steps after them are padding)"
                                                    if params.lengths else ""),
                          missing_step("NaN inputs", params.missing)]}
    output = {}
    if kind == "regression":
        width = spec.output_dim
        output["names"] = [params.y] if width == 1 else [f"{params.y}_{k}" for k in range(width)]
    return Dataset(spec=spec, train=train, val=val, test=test,
                   baseline=baseline_for(kind, spec, train, test),
                   preprocessing={"input": inputs, "output": output})


def with_target_statistics(params, spec: TaskSpec, train: Split, preprocessing: dict | None,
                           normalization: str | None = None) -> TaskSpec:
    """`spec` with the regression target's standardisation, unless normalization is `none`.

    The statistics come from the run's stored `preprocessing` when it has them, else from
    the training split. `normalization` overrides `params.normalization` (a stored mode).
    """
    from dataclasses import replace

    if spec.kind != "regression" or (normalization or params.normalization) == "none":
        return spec
    stored = stored_target_statistics(preprocessing)
    offset, scale = stored if stored is not None else target_statistics(train.y,
                                                                        train.sample_weight)
    return replace(spec, output_offset=offset, output_scale=scale)


@register_reader("npz")
def read_npz(params: NpzParams, path: Path, preprocessing: dict, targets: bool = False) -> Split:
    """New inputs from a `.npz` with the run's array names (`lengths` optional, `y` optional).

    Tokens are one-hot encoded over the run's vocabulary, never the file's; padding,
    masking and the missing-value policy are the run's.
    """
    import numpy as np

    arrays = load_npz(path, what="")
    x = npz_array(arrays, params.x, path)
    inputs, output = preprocessing["input"], preprocessing["output"]
    vocabulary = inputs.get("vocabulary", 0)
    if vocabulary:  # the run's vocabulary, never the file's
        integer_array(arrays, params.x, path, 2, vocabulary, "tokens")
    else:
        features = preprocessing["model_input"]["features"]
        if x.ndim != 3 or not np.issubdtype(x.dtype, np.number) or x.shape[2] != features:
            raise DataError(f"{path}: array {params.x!r} has shape {x.shape} and dtype "
                            f"{x.dtype}; this run reads (N, T, {features}) numbers")
    lengths = arrays.get(params.lengths) if params.lengths else None
    y = npz_array(arrays, params.y, path) if targets else None
    kind = output["kind"]
    split = prepare_split(params, kind, vocabulary, params.x, params.y, x, y, lengths,
                          per_step=output["per_step"], path=path)
    if split.y is not None and kind == "classification" and split.y.max() >= len(
            output["classes"]):
        raise DataError(f"{path}: array {params.y!r} holds class {int(split.y.max())}; this "
                        f"run's classes are 0 to {len(output['classes']) - 1}")
    from dataclasses import replace

    return replace(split, keys=np.arange(len(split)))


def shuffled_split(params, whole: Split, seed: int) -> tuple[Split, Split, Split]:
    """Shuffle with the seed, then cut by `params.split`; every split needs a sequence."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(whole))
    if whole.keys is None:  # each sequence keeps its place in the file as its key
        from dataclasses import replace

        whole = replace(whole, keys=np.arange(len(whole)))
    sizes = params.split.sizes(len(whole))
    if min(sizes) < 1:
        raise DataError(f"{params.path}: {len(whole)} sequences split "
                        f"{params.split.train}/{params.split.val}/{params.split.test} leave "
                        f"{sizes[0]}/{sizes[1]}/{sizes[2]} for train/val/test; every split "
                        "needs at least 1")
    return cut(whole.take(order), params.split)


def prepare_split(params, kind: str, vocabulary: int, x_name: str, y_name: str,
                  x: np.ndarray, y: np.ndarray | None, lengths: np.ndarray | None,
                  per_step: bool | None = None, path: Path | str | None = None) -> Split:
    """One split's arrays as the model reads them, or a DataError naming what is wrong.

    `params` needs `path`, `targets` and `missing` as `NpzParams` has them. `y` may be None
    (new inputs to predict), and then `per_step` must say what the model outputs. `path`
    names the file in messages (default `params.path`).
    """
    import numpy as np

    path = path or params.path
    where = f"{path}: array {x_name!r}"
    if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
        if x.size and x.min() < 0:
            raise DataError(f"{where} holds negative tokens; tokens are 0, 1, 2, ...")
        x = np.eye(vocabulary, dtype=np.float32)[x]
    elif x.ndim == 3 and np.issubdtype(x.dtype, np.number):
        x = x.astype(np.float32)
    else:
        raise DataError(f"{where} has shape {x.shape} and dtype {x.dtype}; expected (N, T) "
                        "integer tokens or (N, T, F) numbers")
    n, steps = x.shape[:2]
    if not n or not steps:
        raise DataError(f"{where} has shape {x.shape}: no sequences or no steps")
    if y is not None:
        y, per_step = _prepared_targets(params, kind, path, x_name, y_name, y, n, steps,
                                        per_step)
    valid = np.ones((n, steps), dtype=bool)
    if lengths is not None:
        lengths = np.asarray(lengths)
        if (lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer)
                or lengths.min() < 1 or lengths.max() > steps):
            found = (f", range {lengths.min()}..{lengths.max()}" if lengths.size
                     and np.issubdtype(lengths.dtype, np.number) else "")
            raise DataError(f"{path}: lengths must be {n} integers in [1, {steps}]; got "
                            f"shape {lengths.shape}, dtype {lengths.dtype}{found}")
        valid &= np.arange(steps)[None, :] < lengths[:, None]
    infinite = np.isinf(x).any(axis=-1) & valid
    if infinite.any():
        row, step = map(int, np.argwhere(infinite)[0])
        raise DataError(f"{where} has an infinite value (first in sequence {row}, step {step}, "
                        "counted from 0); inputs must be finite numbers (NaN for missing)")
    nan = np.isnan(x).any(axis=-1) & valid
    if nan.any():
        if params.missing == "error":
            row, step = map(int, np.argwhere(nan)[0])
            raise DataError(f"{where} has NaN (first in sequence {row}, step {step}, counted "
                            "from 0); clean it, or set data.missing to mask, zero or ffill "
                            "(a trained run keeps the policy it was trained with)")
        if params.missing == "zero":
            x = np.nan_to_num(x, nan=0.0)
        elif params.missing == "ffill":
            x = forward_fill(x)
        else:
            valid &= ~nan
    x[~valid] = PAD  # skipped by the Masking layer
    weights = None
    if per_step:
        weights = valid.astype(np.float32)
    return Split(x, y, weights)


def _prepared_targets(params, kind: str, path, x_name: str, y_name: str, y: np.ndarray,
                      n: int, steps: int, per_step: bool | None) -> tuple[np.ndarray, bool]:
    import numpy as np

    if len(y) != n:
        raise DataError(f"{path}: {y_name!r} has {len(y)} rows but {x_name!r} has {n}")
    if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y.astype(np.float64)).all():
        raise DataError(f"{path}: array {y_name!r} must be finite numbers (no NaN or inf)")
    if per_step is None and params.targets == "auto":
        per_step = y.ndim == 3 or (y.ndim == 2 and (kind == "classification"
                                                    or y.shape[1] == steps))
    elif per_step is None:
        per_step = params.targets == "per_step"
    if kind == "classification":
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 + per_step or y.min() < 0:
            raise DataError(f"{path}: classification targets {y_name!r} must be class "
                            f"ids 0, 1, ... shaped (N,) or (N, T); got {y.dtype} {y.shape}")
        y = y.astype(np.int32)
    else:
        y = y.astype(np.float32)
        if y.ndim == 1 + per_step:
            y = y[..., None]  # one value per sequence or per step
        if y.ndim != 2 + per_step:
            raise DataError(f"{path}: regression targets {y_name!r} have shape {y.shape};"
                            " expected (N,), (N, K), (N, T) or (N, T, K)")
    if per_step and y.shape[1] != steps:
        raise DataError(f"{path}: per-step targets {y_name!r} have {y.shape[1]} steps "
                        f"but {x_name!r} has {steps}")
    return y, per_step


def forward_fill(x: np.ndarray) -> np.ndarray:
    """Carry each feature's last value forward over NaN; leading NaN become 0.

    Works along axis 1: the steps of (N, T, F) sequences.
    """
    import numpy as np

    x = x.copy()
    for t in range(x.shape[1]):
        gap = np.isnan(x[:, t])
        x[:, t][gap] = x[:, t - 1][gap] if t else 0.0
    return x


def baseline_for(kind: str, spec: TaskSpec, train: Split, test: Split):
    import numpy as np

    weights = None if train.sample_weight is None else train.sample_weight.ravel()
    if kind == "classification":  # padded steps (weight 0) are no class
        counts = np.bincount(train.y.ravel(), weights=weights, minlength=spec.num_classes)
        frequencies = counts / counts.sum()
        guess = np.broadcast_to(frequencies, test.y.shape + (spec.num_classes,))
        return classification_baseline("the training class frequencies", guess, test)
    mean = np.average(train.y.reshape(-1, train.y.shape[-1]), axis=0, weights=weights)
    return regression_baseline("the training mean", mean, test, spec.output_scale)
