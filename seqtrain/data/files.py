"""Your own sequences from a `.npz` file: fixed or variable length, any targets.

    data:
      task: npz
      path: sequences.npz      # relative to the config file's folder
      x: x                     # (N, T) integer tokens or (N, T, F) floats
      y: y                     # (N,) / (N, K) per sequence, (N, T) / (N, T, K) per step
      lengths: lengths         # optional: true lengths, the rest is right-padding

Files load with `allow_pickle=False`. Padded and masked steps hold `PAD` in every feature
and are skipped by a `Masking` layer, so they count neither in the loss nor in the metrics.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from seqtrain.data.registry import (
    PAD,
    Dataset,
    FileTaskParams,
    Split,
    TaskSpec,
    classification_baseline,
    register_task,
    regression_baseline,
    split_arrays,
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


def _load(params: NpzParams) -> dict[str, np.ndarray]:
    import numpy as np

    path = Path(params.path)
    if not path.is_file():
        raise DataError(f"data.path: {path} does not exist (relative paths start at the "
                        "config file's folder)")
    with open(path, "rb") as file:
        if file.read(4) != b"PK\x03\x04":  # else np.load would take it for a pickle
            raise DataError(f"{path} is not a readable .npz file (no zip header); write it "
                            "with np.savez or np.savez_compressed")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as err:
        raise DataError(f"{path}: {err}; save plain numeric arrays (np.savez), not "
                        "Python objects") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path} is not a readable .npz file ({err})") from None


def _array(arrays: dict, name: str, path: str) -> np.ndarray:
    if name not in arrays:
        raise DataError(f"{path} has no array {name!r}; it has: {', '.join(sorted(arrays))}")
    return arrays[name]


@register_task("npz", NpzParams)
def npz(params: NpzParams, seed: int) -> Dataset:
    """Load, check and split a `.npz` file (see the module's docstring)."""
    import numpy as np

    arrays = _load(params)
    names = [(params.x, params.y)]
    given = [f"{part}_{split}" in arrays for split in ("val", "test") for part in ("x", "y")]
    if any(given) and not all(given):
        raise DataError(f"{params.path}: give x_val, y_val, x_test and y_test together, or "
                        "none and let data.split cut the file")
    if all(given):
        names += [("x_val", "y_val"), ("x_test", "y_test")]
    parts = []
    for x_name, y_name in names:
        x = _array(arrays, x_name, params.path)
        y = _array(arrays, y_name, params.path)
        lengths = None
        if params.lengths and x_name == params.x:
            lengths = _array(arrays, params.lengths, params.path)
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
    return Dataset(spec=spec, train=train, val=val, test=test,
                   baseline=baseline_for(kind, spec, train, test))


def shuffled_split(params, whole: Split, seed: int) -> tuple[Split, Split, Split]:
    """Shuffle with the seed, then cut by `params.split`; every split needs a sequence."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(whole))
    sizes = params.split.sizes(len(whole))
    if min(sizes) < 1:
        raise DataError(f"{params.path}: {len(whole)} sequences split "
                        f"{params.split.train}/{params.split.val}/{params.split.test} leave "
                        f"{sizes[0]}/{sizes[1]}/{sizes[2]} for train/val/test; every split "
                        "needs at least 1")
    shuffled = whole.take(order)
    return split_arrays(shuffled.x, shuffled.y, shuffled.sample_weight, params.split)


def prepare_split(params, kind: str, vocabulary: int, x_name: str, y_name: str,
                  x: np.ndarray, y: np.ndarray, lengths: np.ndarray | None) -> Split:
    """One split's arrays as the model reads them, or a DataError naming what is wrong.

    `params` needs `path`, `targets` and `missing` as `NpzParams` has them.
    """
    import numpy as np

    where = f"{params.path}: array {x_name!r}"
    if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
        if x.min() < 0:
            raise DataError(f"{where} holds negative tokens; tokens are 0, 1, 2, ...")
        x = np.eye(vocabulary, dtype=np.float32)[x]
    elif x.ndim == 3 and np.issubdtype(x.dtype, np.number):
        x = x.astype(np.float32)
    else:
        raise DataError(f"{where} has shape {x.shape} and dtype {x.dtype}; expected (N, T) "
                        "integer tokens or (N, T, F) numbers")
    n, steps = x.shape[:2]
    if len(y) != n:
        raise DataError(f"{params.path}: {y_name!r} has {len(y)} rows but {x_name!r} has {n}")
    if not np.issubdtype(y.dtype, np.number) or np.isnan(y.astype(np.float64)).any():
        raise DataError(f"{params.path}: array {y_name!r} must be numbers without NaN")
    if params.targets == "auto":
        per_step = y.ndim == 3 or (y.ndim == 2 and (kind == "classification"
                                                    or y.shape[1] == steps))
    else:
        per_step = params.targets == "per_step"
    if kind == "classification":
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 + per_step or y.min() < 0:
            raise DataError(f"{params.path}: classification targets {y_name!r} must be class "
                            f"ids 0, 1, ... shaped (N,) or (N, T); got {y.dtype} {y.shape}")
        y = y.astype(np.int32)
    else:
        y = y.astype(np.float32)
        if y.ndim == 1 + per_step:
            y = y[..., None]  # one value per sequence or per step
        if y.ndim != 2 + per_step:
            raise DataError(f"{params.path}: regression targets {y_name!r} have shape {y.shape};"
                            " expected (N,), (N, K), (N, T) or (N, T, K)")
    if per_step and y.shape[1] != steps:
        raise DataError(f"{params.path}: per-step targets {y_name!r} have {y.shape[1]} steps "
                        f"but {x_name!r} has {steps}")
    valid = np.ones((n, steps), dtype=bool)
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (n,) or lengths.min() < 1 or lengths.max() > steps:
            raise DataError(f"{params.path}: lengths must be {n} integers in [1, {steps}]; got "
                            f"shape {lengths.shape}, range {lengths.min()}..{lengths.max()}")
        valid &= np.arange(steps)[None, :] < lengths[:, None]
    nan = np.isnan(x).any(axis=-1) & valid
    if nan.any():
        if params.missing == "error":
            row, step = map(int, np.argwhere(nan)[0])
            raise DataError(f"{where} has NaN (first in sequence {row}, step {step}); clean it, "
                            "or set data.missing to mask, zero or ffill")
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

    if kind == "classification":
        counts = np.bincount(train.y.ravel(), minlength=spec.num_classes).astype(np.float64)
        frequencies = counts / counts.sum()
        guess = np.broadcast_to(frequencies, test.y.shape + (spec.num_classes,))
        return classification_baseline("the training class frequencies", guess, test)
    mean = train.y.reshape(-1, train.y.shape[-1]).mean(axis=0)
    return regression_baseline("the training mean", mean, test)
