"""A model's outputs decoded into the user's terms, as a table, arrays and files.

Classification: the class (`predicted`) and one probability per class (`prob_<class>`).
Regression: values in the target's units, one column per output (`load_t+1`, ...), with the
window's level added back under `normalization: window`. Each row is keyed as the user's
data names it: the forecast origin's date (or row), the sequence's id (or place in the
file), and the step for per-step tasks. With true values (a run's own split), `true_...`
columns stand beside the predictions, and the metrics follow from them.

Files by extension: `.csv` (one row per sequence or step), `.jsonl` (the same rows as JSON
objects), `.npz` (the arrays, shaped as the model's outputs). With attention weights (a run
trained with `model.attention`), each sequence's weight at every step: CSV columns
`attention_0` ... `attention_<T-1>`, a JSON list `attention`, an (N, T) array `attention`.
No TensorFlow here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from seqtrain import atomic
from seqtrain.data.preprocessing import PAD
from seqtrain.data.registry import Split, classification_baseline, regression_baseline
from seqtrain.errors import SeqtrainError

if TYPE_CHECKING:
    import numpy as np

FORMATS = (".csv", ".jsonl", ".npz")
# The arrays of an .npz of predictions, beside the key (which is renamed if it clashes).
ARRAY_NAMES = ("step", "predicted", "probabilities", "prediction", "true", "sample_weight",
               "valid", "attention")


def output_format(path: Path) -> str:
    """The format `path`'s extension asks for.

    Raises:
        SeqtrainError: An extension seqtrain does not write.
    """
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SeqtrainError(f"-o {path}: unknown extension {path.suffix!r}; write .csv, .jsonl "
                            "or .npz")
    return suffix


@dataclass
class Predictions:
    """What a model predicted for some sequences, with their keys and maybe true values.

    Attributes:
        preprocessing: The run's `preprocessing.json`.
        outputs: The model's outputs: probabilities, or values in the target's units
            (relative to `split.level` under `normalization: window`).
        split: The inputs: keys, weights, levels, and targets when `with_true`.
        with_true: Whether to report true values (a run's own split).
        attention: (N, T) attention weights of each sequence's steps (0 on padding, each
            row summing to 1), or None.
    """

    preprocessing: dict
    outputs: np.ndarray
    split: Split
    with_true: bool = False
    attention: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.outputs)

    def __repr__(self) -> str:
        return (f"Predictions({len(self)} sequences, {self.kind}, columns "
                f"{self.columns()[:6]}{'...' if len(self.columns()) > 6 else ''})")

    @property
    def kind(self) -> str:
        return self.preprocessing["output"]["kind"]

    @property
    def per_step(self) -> bool:
        return bool(self.preprocessing["output"]["per_step"])

    @property
    def key_name(self) -> str:
        return self.preprocessing["output"].get("key") or "sequence"

    @property
    def keys(self) -> np.ndarray:
        import numpy as np

        return self.split.keys if self.split.keys is not None else np.arange(len(self))

    @property
    def names(self) -> list[str]:
        """Regression: one name per output value."""
        return list(self.preprocessing["output"]["names"])

    @property
    def classes(self) -> list:
        return list(self.preprocessing["output"]["classes"])

    def values(self) -> np.ndarray:
        """Regression: predictions in the target's units, the level added back."""
        if self.split.level is None:
            return self.outputs
        return self.outputs + self.split.level[:, None].astype(self.outputs.dtype)

    def true_values(self) -> np.ndarray | None:
        """The targets in the user's terms: classes, or values in the target's units."""
        y = self.split.y
        if not self.with_true or y is None:
            return None
        if self.kind == "regression" and self.split.level is not None:
            return y + self.split.level[:, None].astype(y.dtype)
        return y

    def steps(self) -> np.ndarray:
        """(N, T) booleans: each sequence's steps up to its last observed one (per-step tasks).

        The padding after a sequence's end has no row; a masked missing step inside it
        does (the model carries its state, and its output, over such a step).
        """
        import numpy as np

        x = self.split.x
        if "padding_value" not in self.preprocessing["model_input"]:
            return np.ones(x.shape[:2], dtype=bool)
        # Padded steps: every feature PAD, or token 0 (an embedding with mask_zero).
        observed = ~(x == PAD).all(axis=-1) if x.ndim == 3 else x != 0
        last = x.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
        last = np.where(observed.any(axis=1), last, -1)  # all padding: no step
        return np.arange(x.shape[1])[None, :] <= last[:, None]

    def weights(self) -> np.ndarray:
        """Weight of each target: 0 where none counts (padding, a step with nothing to recall)."""
        import numpy as np

        shape = self.outputs.shape[:2] if self.per_step else self.outputs.shape[:1]
        if self.split.sample_weight is not None:
            return self.split.sample_weight.reshape(shape).astype(np.float64)
        return np.ones(shape)

    def arrays(self) -> dict[str, np.ndarray]:
        """The predictions as arrays shaped like the model's outputs (what `.npz` holds)."""
        import numpy as np

        key = self.key_name
        if key in ARRAY_NAMES:  # a column of the user's named like one of ours
            key = f"key_{key}"
        found: dict[str, np.ndarray] = {key: self.keys}
        if self.kind == "classification":
            found["predicted"] = np.asarray(self.classes)[self.outputs.argmax(axis=-1)]
            found["probabilities"] = self.outputs
        else:
            found["prediction"] = self.values()
        true = self.true_values()
        if true is not None:
            found["true"] = np.asarray(self.classes)[true] if self.kind == "classification" \
                else true
            found["sample_weight"] = self.weights().astype(np.float32)
        if self.per_step:
            found["valid"] = self.steps()
        if self.attention is not None:
            found["attention"] = self.attention
        return found

    def columns(self) -> list[str]:
        """The table's columns, in order."""
        columns = [self.key_name] + (["step"] if self.per_step else [])
        if self.kind == "classification":
            columns += ["predicted", *(f"prob_{c}" for c in self.classes)]
            if self.with_true:
                columns.append("true_class")
        else:
            columns += self.names
            if self.with_true:
                columns += [f"true_{name}" for name in self.names]
        if self.attention is not None:
            columns += [f"attention_{t}" for t in range(self.attention.shape[1])]
        return columns

    def rows(self) -> Iterator[list[Any]]:
        """The table's rows, one per sequence (or per valid step); None: no true value."""
        import numpy as np

        keys = self.keys.tolist()
        true = self.true_values()
        weights = self.weights()
        if self.kind == "classification":
            classes = self.classes  # names as the user's data spells them (0, 1, ... if none)
            predicted = self.outputs.argmax(axis=-1)
        else:
            values = self.values()
        valid = self.steps() if self.per_step else None
        for n in range(len(self)):
            places = [(n,)]
            if valid is not None:
                places = [(n, int(t)) for t in np.flatnonzero(valid[n])]
            for place in places:
                row: list[Any] = [keys[n]] + ([place[1]] if self.per_step else [])
                counts = weights[place] > 0
                if self.kind == "classification":
                    row += [classes[predicted[place]], *self.outputs[place].tolist()]
                    if true is not None:
                        row.append(classes[true[place]] if counts else None)
                else:
                    row += values[place].tolist()
                    if true is not None:
                        row += true[place].tolist() if counts else [None] * len(self.names)
                if self.attention is not None:  # per-sequence heads only
                    row += self.attention[n].tolist()
                yield row

    def metrics(self) -> dict[str, float]:
        """Loss and metrics against the true values, weighted as training weighs them.

        Classification: `loss` (cross-entropy) and `accuracy`; regression: `loss` (as the
        model's loss counts it), `mse` and `mae` in the target's units.

        Raises:
            ValueError: There are no true values.
        """
        import numpy as np

        true = self.true_values()
        if true is None:
            raise ValueError("no true values: predict a run's own split for metrics")
        # Computed as the baselines are, in float64.
        scored = Split(self.split.x, true, self.split.sample_weight)
        if self.kind == "classification":
            return classification_baseline("", self.outputs.astype(np.float64), scored).metrics
        scale = tuple(self.preprocessing["output"].get("scale") or ())
        return regression_baseline("", self.values().astype(np.float64),
                                   replace(scored, y=true.astype(np.float64)), scale).metrics

    # --- files ------------------------------------------------------------------------------

    def write(self, path: str | Path) -> None:
        """Write to `path` atomically, in the format of its extension (see `FORMATS`).

        Raises:
            SeqtrainError: An unknown extension.
            StorageError: The file cannot be written.
        """
        path = Path(path)
        suffix = output_format(path)
        if suffix == ".npz":
            import numpy as np

            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:  # as np.savez, any array name
                for name, array in self.arrays().items():
                    with archive.open(f"{name}.npy", "w") as file:
                        np.lib.format.write_array(file, np.asanyarray(array),
                                                  allow_pickle=False)
            atomic.write_bytes(path, buffer.getvalue())
            return
        text = io.StringIO()
        (self.write_csv if suffix == ".csv" else self.write_jsonl)(text)
        atomic.write_text(path, text.getvalue())

    def write_csv(self, file: IO[str]) -> None:
        """The table as CSV with a header row; floats with 7 significant digits."""
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(self.columns())
        for row in self.rows():
            writer.writerow(["" if v is None else (f"{v:.7g}" if isinstance(v, float) else v)
                             for v in row])

    def write_jsonl(self, file: IO[str]) -> None:
        """The table as JSON lines, one object per row; floats as the CSV has them, NaN null."""
        columns = self.columns()
        steps = 0 if self.attention is None else self.attention.shape[1]
        named = len(columns) - steps
        for row in self.rows():
            record = {c: (_short(v) if isinstance(v, float) else v)
                      for c, v in zip(columns[:named], row[:named], strict=True)}
            if steps:  # one list, not T keys
                record["attention"] = [_short(v) for v in row[named:]]
            file.write(json.dumps(record) + "\n")


def _short(value: float) -> float | None:
    """7 significant digits, as in the CSV: a float32's digits, without float64's noise."""
    return float(f"{value:.7g}") if math.isfinite(value) else None
