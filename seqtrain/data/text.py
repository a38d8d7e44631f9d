"""Texts from a CSV file, classified (or scored) whole: `task: text_csv`.

    data:
      task: text_csv
      path: reviews.csv          # relative to the config file's folder; a header row
      text_column: text
      label_column: label        # classes: strings or whole numbers, kept as written
      # target: stars            # or a number to predict instead (regression)
      max_length: 32             # tokens per text: longer ones are cut, shorter ones padded
      max_tokens: 20000          # vocabulary size, padding and unknown words included

Texts are tokenised by Keras' own `TextVectorization` (lowercased unless `lowercase: false`,
punctuation stripped, split on whitespace), its vocabulary adapted on the training split
only: words are ranked by count, ties by the words themselves, so the same file and seed
give the same vocabulary in any process. The model reads token ids right-padded with 0,
which its `Embedding(mask_zero=True)` masks: padded steps reach neither the recurrent
layers' state nor the loss. The vocabulary and the class names are stored in the run
(`preprocessing.json`) and applied by `eval`, `predict` and `export`; nothing is adapted
again. Every file check runs in plain Python before TensorFlow starts (it tokenises).

`predict` reads a CSV with the same text column, or a `.txt` file of one text per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from seqtrain.data.csvfile import finite, read_rows, read_text
from seqtrain.data.files import TARGET_NORMALIZATION_DESCRIPTION, with_target_statistics
from seqtrain.data.registry import (
    Baseline,
    Dataset,
    FileTaskParams,
    Split,
    TaskSpec,
    classification_baseline,
    register_reader,
    register_task,
    regression_baseline,
)
from seqtrain.errors import DataError
from seqtrain.fields import PositiveInt

if TYPE_CHECKING:
    import numpy as np

# `model.embedding_dim` when a text config leaves it out: words need an embedding, and a
# few dozen dimensions serve the vocabularies of small and medium text sets.
TEXT_EMBEDDING_DIM = 64
SPLIT_NAMES = ("train", "val", "test")
# `preprocessing.json`'s tokeniser settings: a trained run reads texts with its own.
TOKENIZER_SETTINGS = ("lowercase", "standardize", "split", "max_tokens")
WHOLE_NUMBER = re.compile(r"[+-]?\d+")
# Texts per call of `TextVectorization`: bounds the memory of its ragged intermediates.
TOKENIZE_BATCH = 8192
# The bag-of-words baseline scores texts in passes of at most this many (word, class) cells.
BASELINE_CELLS = 4_000_000


class TextCsvParams(FileTaskParams):
    """Parameters of `task: text_csv` (the file at `path` has a header row)."""

    task: Literal["text_csv"] = Field("text_csv", description="Task name.")
    text_column: str = Field("text", description="The column holding each row's text.")
    label_column: str | None = Field(
        "label", description="Classification: the column of class names (strings, or whole "
        "numbers); each distinct value is a class.")
    target: str | None = Field(
        None, description="Regression instead: the column of numbers to predict (then "
        "label_column is not read).")
    max_length: PositiveInt = Field(
        64, description="Tokens the model reads per text: longer texts are cut at the end, "
        "shorter ones padded with 0, which the model masks.")
    max_tokens: int = Field(
        20000, ge=3, strict=True, description="Vocabulary size, the padding token and the "
        "unknown-word token included: the most frequent training words are kept.")
    lowercase: bool = Field(True, description="Lowercase texts before splitting them into "
                            "words (punctuation is always stripped).")
    split_column: str | None = Field(
        None, description="A column saying each row's split (train, val or test), instead "
        "of the shuffled `split` fractions.")
    missing: Literal["error", "drop"] = Field(
        "error", description="Empty texts: error names the first; drop skips their rows "
        "(in training, eval and predict alike).")
    normalization: Literal["standard", "none"] = Field(
        "standard", description=TARGET_NORMALIZATION_DESCRIPTION)

    @model_validator(mode="after")
    def _labels_or_target(self) -> TextCsvParams:
        if self.target is not None:
            if "label_column" in self.model_fields_set and self.label_column is not None:
                raise ValueError("give label_column (classification) or target (regression), "
                                 "not both")
            self.__dict__["label_column"] = None  # regression: no class column is read
        elif self.label_column is None:
            raise ValueError("give label_column (classification) or target (regression)")
        return self

    def default_embedding_dim(self) -> int | None:
        return TEXT_EMBEDDING_DIM

    def task_kind(self) -> str:
        return self.kind

    def per_step(self) -> bool:
        return False  # one class (or value) per text

    @property
    def kind(self) -> str:
        return "regression" if self.target is not None else "classification"



@dataclass(frozen=True)
class Texts:
    """The rows of a text file: each text, its line in the file, and its label or value.

    Attributes:
        path: The file, for messages.
        texts: The texts (N,), as written.
        lines: Each text's line in the file (N,), the header's = 1.
        labels: The label column's cells (stripped), or None when not read.
        values: The regression target's numbers, or None when not read.
        splits: The split column's cells (lowercased), or None.
    """

    path: Path
    texts: list[str]
    lines: list[int]
    labels: list[str] | None = None
    values: list[float] | None = None
    splits: list[str] | None = None


def read_texts(params: TextCsvParams, path: Path, with_targets: bool,
               with_split: bool = False, new_inputs: bool = False) -> Texts:
    """A CSV's (or, for new inputs, a `.txt` file's) texts, every cell checked: no TensorFlow.

    Args:
        params: The `data:` section.
        path: The file.
        with_targets: Read the label or target column too.
        with_split: Read the split column too (training).
        new_inputs: The file holds new inputs for a trained run (`eval`, `predict`): its
            messages speak of the run's policy, not of a config to change.

    Raises:
        DataError: Not UTF-8 (file and line), a missing column (the file's columns), an
            empty text under `missing: error`, an empty label, a target that is no
            number, a bad split name, or no text left (file, line and column each).
    """
    if path.suffix.lower() == ".txt" and not with_split:
        if with_targets:
            raise DataError(f"{path} is a .txt file of texts alone; scoring needs a CSV with "
                            f"the columns {params.text_column!r} and "
                            f"{params.target or params.label_column!r}")
        lines = read_text(path).split("\n")  # only \n ends a line, as editors count them
        while lines and not lines[-1].strip():
            lines.pop()  # the last line's newline, and blank lines after the last text
        rows = [(n, {params.text_column: line.removesuffix("\r")})
                for n, line in enumerate(lines, start=1)]
        where = ""
    else:
        target_column = params.target or params.label_column
        needed = [params.text_column, *([target_column] if with_targets else []),
                  *([params.split_column] if with_split and params.split_column else [])]
        rows = read_rows(path, needed)
        where = f", column {params.text_column!r}"
    found = Texts(path, [], [], [] if with_targets and params.target is None else None,
                  [] if with_targets and params.target is not None else None,
                  [] if with_split and params.split_column else None)
    for line, row in rows:
        text = row[params.text_column]
        if not text.strip():
            if params.missing == "drop":
                continue
            if new_inputs:
                raise DataError(f"{path}, line {line}{where}: the text is empty, and this run "
                                "was trained with data.missing: error; fill the text or remove "
                                "the line")
            raise DataError(f"{path}, line {line}{where}: the text is empty; fill it or "
                            "remove the row (or set data.missing: drop to skip empty texts)")
        found.texts.append(text)
        found.lines.append(line)
        if found.labels is not None:
            label = row[params.label_column].strip()
            if not label:
                raise DataError(f"{path}, line {line}, column {params.label_column!r} is "
                                "empty; every text needs its class")
            found.labels.append(label)
        if found.values is not None:
            cell = row[params.target].strip()
            value = finite(cell, path, line, params.target) if cell else float("nan")
            if value != value:
                raise DataError(f"{path}, line {line}, column {params.target!r} is empty or "
                                "NaN; every text needs its target")
            found.values.append(value)
        if found.splits is not None:
            name = row[params.split_column].strip().lower()
            if name not in SPLIT_NAMES:
                raise DataError(f"{path}, line {line}, column {params.split_column!r}: "
                                f"{row[params.split_column]!r} is no split; expected train, "
                                "val or test")
            found.splits.append(name)
    if not rows:
        raise DataError(f"{path} holds no texts" + (
            "" if where == "" else ": it has a header but no rows below it"))
    if not found.texts:
        raise DataError(f"{path} has no text left to read: every row's {params.text_column!r} "
                        "is empty" + (" (data.missing: drop skipped them)"
                                      if params.missing == "drop" else ""))
    return found


def class_names(labels: list[str]) -> list[str] | list[int]:
    """The distinct labels in order: whole numbers numerically (as ints), else as strings."""
    distinct = set(labels)
    if all(WHOLE_NUMBER.fullmatch(label) for label in distinct):
        return sorted({int(label) for label in distinct})
    return sorted(distinct)


def class_ids(texts: Texts, column: str, classes: list) -> list[int]:
    """Each row's class as its index in `classes`, or a DataError naming the first unknown."""
    numeric = bool(classes) and isinstance(classes[0], int)
    index = {name: k for k, name in enumerate(classes)}
    ids = []
    for line, label in zip(texts.lines, texts.labels, strict=True):
        key = int(label) if numeric and WHOLE_NUMBER.fullmatch(label) else label
        if key not in index:
            shown = ", ".join(map(str, classes))
            raise DataError(f"{texts.path}, line {line}, column {column!r}: class {label!r} is "
                            f"not one this run was trained on; its classes are: {shown}")
        ids.append(index[key])
    return ids


def vectorizer(inputs: dict, vocabulary: list[str] | None = None):
    """A `TextVectorization` with the run's settings (and vocabulary, when given)."""
    import keras

    options = {"standardize": inputs["standardize"], "split": inputs["split"],
               "output_mode": "int"}
    if vocabulary is None:
        return keras.layers.TextVectorization(max_tokens=inputs["max_tokens"], **options)
    return keras.layers.TextVectorization(
        vocabulary=vocabulary, output_sequence_length=inputs["max_length"], **options)


def standardized(texts, inputs: dict):
    """The texts as a string tensor, lowercased when the run lowercases.

    `tf.strings.lower` with UTF-8, before the `TextVectorization`, so that letters beyond
    ASCII (É, Ü, Σ) are lowercased too: the layer's own `lower_and_strip_punctuation`
    lowercases ASCII letters only. Training, `predict` and the exported SavedModel all
    call this.
    """
    import tensorflow as tf

    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    return tf.strings.lower(texts, encoding="utf-8") if inputs.get("lowercase") else texts


def adapt_vocabulary(texts: list[str], inputs: dict) -> list[str]:
    """The vocabulary `TextVectorization.adapt` learns from `texts`.

    Padding "" and the unknown word "[UNK]" first, then the words by falling count, ties
    by the words themselves (Keras sorts them so): the same texts give the same list.
    """
    import numpy as np

    layer = vectorizer(inputs)
    layer.adapt(standardized(np.array(texts, dtype=object), inputs), batch_size=TOKENIZE_BATCH)
    return [str(word) for word in layer.get_vocabulary()]


def tokenize(texts, inputs: dict) -> np.ndarray:
    """Texts as the model reads them: (N, max_length) int32 token ids, right-padded with 0.

    Args:
        texts: The texts, a sequence of strings.
        inputs: `preprocessing.json`'s `input`: the settings and the stored vocabulary.
    """
    import numpy as np

    layer = vectorizer(inputs, inputs["vocabulary"])
    texts = np.asarray(texts, dtype=object)
    parts = [layer(standardized(texts[start:start + TOKENIZE_BATCH], inputs)).numpy()
             for start in range(0, len(texts), TOKENIZE_BATCH)]
    return np.concatenate(parts).astype(np.int32)


def bag_of_words_baseline(train: Split, test: Split, num_classes: int,
                          vocabulary: int) -> Baseline:
    """Multinomial naive Bayes on word counts, fit on `train`, scored on `test`.

    It reads the same tokens as the model (padding left out) but not their order: what a
    text set that needs word order leaves it is the order's worth. Closed form (counts
    with add-one smoothing), so it is deterministic and costs one pass over the tokens
    however many the classes.
    """
    import numpy as np

    def pairs(x):  # (text, token) of every word, padding left out: the counts, sparse
        rows, steps = np.nonzero(x)
        return rows, x[rows, steps].astype(np.int64)

    rows, tokens = pairs(train.x)
    labels = train.y.astype(np.int64)
    counts = np.bincount(tokens * num_classes + labels[rows],
                         minlength=vocabulary * num_classes).reshape(vocabulary, num_classes)
    smoothed = counts + 1.0
    log_word = np.log(smoothed) - np.log(smoothed.sum(axis=0))  # log P(word | class)
    prior = np.log(np.bincount(labels, minlength=num_classes) + 1.0)
    probabilities = np.zeros((len(test), num_classes))
    # Texts per pass: its (word, class) array stays under BASELINE_CELLS float64 cells.
    batch = max(1, BASELINE_CELLS // (max(1, test.x.shape[1]) * num_classes))
    for start in range(0, len(test), batch):
        rows, tokens = pairs(test.x[start:start + batch])
        scores = np.tile(prior, (min(batch, len(test) - start), 1))
        if len(rows):
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            scores[rows[starts]] += np.add.reduceat(log_word[tokens], starts)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        probabilities[start:start + len(scores)] = scores / scores.sum(axis=1, keepdims=True)
    return classification_baseline("bag of words: naive Bayes on the training split's word "
                                   "counts, word order ignored", probabilities, test)


def _split_indices(params: TextCsvParams, texts: Texts, seed: int) -> list[np.ndarray]:
    """Row indices of the train, val and test splits (split column, or shuffled fractions)."""
    import numpy as np

    if texts.splits is not None:
        names = np.array(texts.splits)
        parts = [np.flatnonzero(names == name) for name in SPLIT_NAMES]
        where = f"its column {params.split_column!r} names"
    else:
        order = np.random.default_rng(seed).permutation(len(texts.texts))
        num_train, num_val, _ = params.split.sizes(len(order))
        parts = [order[:num_train], order[num_train:num_train + num_val],
                 order[num_train + num_val:]]
        where = f"data.split {params.split.train}/{params.split.val}/{params.split.test} gives"
    if min(len(part) for part in parts) < 1:
        sizes = "/".join(str(len(part)) for part in parts)
        raise DataError(f"{params.path}: {where} {sizes} train/val/test texts; every split "
                        "needs at least 1")
    return parts


@register_task("text_csv", TextCsvParams, tensorflow=True)
def text_csv(params: TextCsvParams, seed: int, preprocessing: dict | None = None) -> Dataset:
    """Read, check and split the texts; tokenise them with the training split's vocabulary.

    With a run's stored `preprocessing`, its vocabulary and classes are applied instead of
    being learnt again.
    """
    import numpy as np

    path = Path(params.path)
    texts = read_texts(params, path, with_targets=True, with_split=True)
    stored = (preprocessing or {}).get("input", {})
    inputs = {"source": "text", "encoding": "text", "text_column": params.text_column,
              "lowercase": params.lowercase, "standardize": "strip_punctuation",
              "split": "whitespace",
              "max_length": params.max_length, "max_tokens": params.max_tokens,
              "missing": params.missing}
    # A trained run tokenises as it was trained: its stored settings win over the config's.
    inputs.update({key: stored[key] for key in TOKENIZER_SETTINGS if key in stored})
    if "standardize" in stored and "lowercase" not in stored:
        inputs["lowercase"] = False  # a run from before: its layer lowercased, ASCII only
    texts = _with_words(texts, inputs, params)
    parts = _split_indices(params, texts, seed)
    if "vocabulary" in stored:
        vocabulary = list(stored["vocabulary"])
    else:
        vocabulary = adapt_vocabulary([texts.texts[i] for i in parts[0]], inputs)
    inputs["vocabulary"] = vocabulary
    inputs["reading"] = reading_steps(params, len(vocabulary))
    x = tokenize(texts.texts, inputs)
    output: dict = {"key": "line"}
    if params.kind == "classification":
        classes = (list(preprocessing["output"]["classes"]) if preprocessing
                   else class_names(texts.labels))
        if len(classes) < 2:
            raise DataError(f"{path}, column {params.label_column!r} holds one class only "
                            f"({classes[0]!r}); a classifier needs at least 2")
        y = np.array(class_ids(texts, params.label_column, classes), dtype=np.int32)
        output["classes"] = classes
    else:
        y = np.array(texts.values, dtype=np.float32)[:, None]
        output["names"] = [params.target]
    whole = Split(x, y, None, keys=np.array(texts.lines))
    train, val, test = (whole.take(part) for part in parts)
    spec = TaskSpec(timesteps=params.max_length, features=1, per_step=False, kind=params.kind,
                    num_classes=len(output.get("classes", ())),
                    output_dim=0 if params.kind == "classification" else 1,
                    tokens=len(vocabulary), masked=True)
    spec = with_target_statistics(params, spec, train, preprocessing)
    if params.kind == "classification":
        baseline = bag_of_words_baseline(train, test, spec.num_classes, spec.tokens)
    else:
        mean = train.y.mean(axis=0, dtype=np.float64)
        baseline = regression_baseline("the training mean", mean, test, spec.output_scale)
    return Dataset(spec=spec, train=train, val=val, test=test, baseline=baseline,
                   preprocessing={"input": inputs, "output": output})


def _with_words(texts: Texts, inputs: dict, params: TextCsvParams) -> Texts:
    """`texts` without those that have no word (punctuation only), as `missing` says.

    Whether a text has words does not depend on the vocabulary, so this runs before the
    split, as the dropping of empty texts does: the splits are those of the file without
    these rows.

    Raises:
        DataError: A text without words under `missing: error` (its line), or none left.
    """
    import numpy as np

    probe = tokenize(texts.texts, {**inputs, "vocabulary": ["", "[UNK]", "a"],
                                   "max_length": 1})
    wordless = ~probe.any(axis=1)
    if not wordless.any():
        return texts
    if params.missing == "error":
        raise DataError(_wordless_message(texts.path, texts.lines[int(np.argmax(wordless))],
                                          f", column {params.text_column!r}", False))
    kept = np.flatnonzero(~wordless)
    if not len(kept):
        raise DataError(f"{texts.path} has no text with words left to read (data.missing: "
                        "drop skipped the rest)")

    def pick(values):
        return None if values is None else [values[i] for i in kept]

    return Texts(texts.path, pick(texts.texts), pick(texts.lines), pick(texts.labels),
                 pick(texts.values), pick(texts.splits))


def reading_steps(params: TextCsvParams, size: int) -> list[str]:
    """`preprocessing.json`'s `steps` for the texts, in words."""
    case = ("lowercase each text (every letter, UTF-8: tf.strings.lower(texts, "
            "encoding='utf-8')), " if params.lowercase else "")
    return [f"read the CSV file (header row, UTF-8); each row's {params.text_column!r} is one "
            "text (for predict, a .txt file holds one text per line); empty texts and "
            "texts with no words (punctuation only): "
            + ("their rows are skipped" if params.missing == "drop" else "refused"),
            f"{case}delete the ASCII punctuation !\"#$%&()*+,-./:;<=>?@[\\]^_`{{|}}~' and "
            "split on whitespace into words (Keras TextVectorization, "
            "standardize='strip_punctuation', split='whitespace')",
            f"replace each word by its index in input.vocabulary ({size} entries: 0 is the "
            "padding \"\", 1 the unknown word \"[UNK]\" that any other word becomes)",
            f"keep the first {params.max_length} tokens; right-pad shorter texts with 0 to "
            f"{params.max_length} (the model masks token 0)"]


def tokenized(split: Split, preprocessing: dict, path: Path) -> Split:
    """`split` with its texts replaced by the model's token ids (TensorFlow).

    A text with no word left after tokenising (punctuation only) is refused, naming its
    line, or skipped: as the run's `missing` policy treats empty texts.

    Raises:
        DataError: A text with no words under `missing: error`, or none with words left.
    """
    import numpy as np

    inputs = preprocessing["input"]
    split = replace(split, x=tokenize(split.x, inputs))
    wordless = ~split.x.any(axis=1)
    if not wordless.any():
        return split
    column = "" if path.suffix.lower() == ".txt" else f", column {inputs['text_column']!r}"
    if inputs.get("missing", "error") == "error":
        raise DataError(_wordless_message(path, split.keys[int(np.argmax(wordless))], column,
                                          True))
    if wordless.all():
        raise DataError(f"{path} has no text with words left to read (data.missing: drop "
                        "skipped the rest)")
    return split.take(np.flatnonzero(~wordless))


@register_reader("text_csv", encode=tokenized)
def read_new_texts(params: TextCsvParams, path: Path, preprocessing: dict,
                   targets: bool = False) -> Split:
    """A CSV with the run's text column (and label or target, with `targets`), or a `.txt`.

    The split's `x` holds the texts themselves: `tokenize` (TensorFlow) turns them into
    tokens once every cell is checked (see `registry.read_inputs`).
    """
    import numpy as np

    texts = read_texts(params, path, with_targets=targets, new_inputs=True)
    y = None
    if targets and params.kind == "classification":
        y = np.array(class_ids(texts, params.label_column, preprocessing["output"]["classes"]),
                     dtype=np.int32)
    elif targets:
        y = np.array(texts.values, dtype=np.float32)[:, None]
    x = np.empty(len(texts.texts), dtype=object)
    x[:] = texts.texts
    return Split(x, y, None, keys=np.array(texts.lines))


def _wordless_message(path: Path, line: int, column: str, new_inputs: bool) -> str:
    """A text with no words: where it is, and what to do."""
    fix = ("fill the text or remove the line (this run was trained with data.missing: error)"
           if new_inputs else "fill it or remove the row (or set data.missing: drop to skip "
           "texts without words)")
    return (f"{path}, line {line}{column}: the text has no words (only punctuation or "
            f"spaces); {fix}")
