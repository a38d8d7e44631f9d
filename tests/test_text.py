"""`task: text_csv`: real runs on real CSV files, predict/eval/export with the stored vocabulary."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from seqtrain.errors import DataError
from tests.conftest import ROOT, invoke, run_cli, write_config


def _make_text():
    spec = importlib.util.spec_from_file_location("make_text", ROOT / "examples" / "make_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reviews_csv(path: Path, rows: int = 240, seed: int = 1) -> Path:
    """A few hundred rows of the shipped generator's reviews (labels positive/negative)."""
    return _make_text().main(rows=rows, seed=seed, path=path)


def text_config(folder: Path, name: str = "text.yaml", **data) -> Path:
    return write_config(folder, {
        "name": "text", "seed": 5, "device": "cpu",
        "data": {"task": "text_csv", "path": "reviews.csv", "max_length": 12, **data},
        "model": {"cell": "lstm", "units": 8, "embedding_dim": 8},
        "train": {"epochs": 1, "batch_size": 32},
    }, name)


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("text")
    reviews_csv(folder / "reviews.csv")
    result = invoke("run", text_config(folder), "--run-dir", folder / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    return folder / "run"


def stored(run: Path) -> dict:
    return json.loads((run / "preprocessing.json").read_text())


def test_the_run_stores_its_vocabulary_and_class_names_and_masks_padding(text_run):
    document = stored(text_run)
    vocabulary = document["input"]["vocabulary"]
    assert vocabulary[:2] == ["", "[UNK]"] and "not" in vocabulary
    assert document["output"]["classes"] == ["negative", "positive"]
    assert document["model_input"] == {"name": "tokens", "dtype": "int32", "features": None,
                                       "timesteps_in_training": 12, "padding_value": 0}
    summary = json.loads((text_run / "summary.json").read_text())
    assert summary["baseline"]["description"].startswith("bag of words")
    assert 0 <= summary["baseline"]["accuracy"] <= 1
    config = (text_run / "config.yaml").read_text()
    assert "embedding_dim: 8" in config


def test_the_vocabulary_is_counted_on_the_training_split_ties_broken_by_the_words(text_run):
    """Keras ranks words by count, ties by the words (descending): no hash order leaks in."""
    from seqtrain.config import load_config
    from seqtrain.data.text import read_texts

    config = load_config(text_run / "config.yaml")
    texts = read_texts(config.data, Path(config.data.path), with_targets=True)
    order = np.random.default_rng(config.seed).permutation(len(texts.texts))
    train = [texts.texts[i] for i in order[:config.data.split.sizes(len(order))[0]]]
    counts = Counter(word for text in train
                     for word in re.sub(r"[^\w\s]", "", text.lower()).split())
    expected = sorted(counts, key=lambda word: (counts[word], word), reverse=True)
    assert stored(text_run)["input"]["vocabulary"] == ["", "[UNK]", *expected]


def test_eval_and_predict_reproduce_the_runs_test_metrics(text_run, tmp_path):
    summary = json.loads((text_run / "summary.json").read_text())
    evaluated = json.loads(invoke("eval", text_run, "--json", "--quiet").stdout)["metrics"]
    assert evaluated == summary["test"]
    predicted = invoke("predict", text_run, "--split", "test", "-o", tmp_path / "test.csv",
                       "--json", "--quiet")
    assert predicted.exit_code == 0, predicted.stderr
    for name, value in json.loads(predicted.stdout)["metrics"].items():
        assert value == pytest.approx(summary["test"][name], rel=1e-5, abs=1e-7), name
    # The test split's rows, as a file of their own: eval reads it with the stored vocabulary.
    rows = read_csv((tmp_path / "test.csv").read_text())
    assert {row["true_class"] for row in rows} <= {"negative", "positive"}
    original = Path(stored_path(text_run)).read_text().splitlines()
    test_file = tmp_path / "test_rows.csv"
    with open(test_file, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["label", "text"])  # columns in another order: found by name
        for row in rows:
            (text, label), = csv.reader([original[int(row["line"]) - 1]])
            writer.writerow([label, text])
    on_file = json.loads(invoke("eval", text_run, test_file, "--json", "--quiet").stdout)
    for name, value in on_file["metrics"].items():
        assert value == pytest.approx(summary["test"][name], rel=1e-5, abs=1e-7), name


def stored_path(run: Path) -> str:
    from seqtrain.config import load_config

    return load_config(run / "config.yaml").data.path


def test_predict_reads_csv_and_txt_files_and_names_the_classes(text_run, tmp_path):
    texts = ["the food was good, it was not bad", "the food was not good, it was bad",
             "Zebras ate the wifi"]  # unknown words become [UNK]
    (tmp_path / "new.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    with open(tmp_path / "new.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "text"])
        writer.writerows([[k, text] for k, text in enumerate(texts)])
    tables = {}
    for name in ("new.txt", "new.csv"):
        result = invoke("predict", text_run, tmp_path / name, "-o", tmp_path / f"{name}.csv",
                        "--quiet")
        assert result.exit_code == 0, result.stderr
        tables[name] = read_csv((tmp_path / f"{name}.csv").read_text())
    rows = tables["new.txt"]
    assert list(rows[0]) == ["line", "predicted", "prob_negative", "prob_positive"]
    assert [row["line"] for row in rows] == ["1", "2", "3"]
    assert [row["line"] for row in tables["new.csv"]] == ["2", "3", "4"]
    for row, other in zip(rows, tables["new.csv"], strict=True):
        assert row["predicted"] in ("negative", "positive")
        probabilities = [float(row["prob_negative"]), float(row["prob_positive"])]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert row["predicted"] == ("negative", "positive")[int(np.argmax(probabilities))]
        assert {k: v for k, v in row.items() if k != "line"} == {
            k: v for k, v in other.items() if k != "line"}


def test_the_checkpoint_reloads_in_safe_mode_with_masked_padding(text_run):
    import keras

    model = keras.saving.load_model(text_run / "checkpoints" / "best.keras", safe_mode=True)
    embedding = model.get_layer("embedding")
    assert embedding.mask_zero
    tokens = np.array([[5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.int32)
    longer = np.array([[5, 6, 7, 0, 0]], dtype=np.int32)  # padding adds nothing
    np.testing.assert_allclose(model.predict(tokens, verbose=0),
                               model.predict(longer, verbose=0), rtol=1e-6)


def test_the_saved_model_takes_raw_strings_and_agrees_with_predict(text_run, tmp_path):
    import tensorflow as tf

    texts = ["the food was good, it was not bad", "the food was not good, it was bad",
             "THE ROOM WAS AWFUL!!", "nothing we know", "THE CAFÉ WAS NOT ÜBEL"]
    (tmp_path / "new.txt").write_text("\n".join(texts), encoding="utf-8")
    result = invoke("predict", text_run, tmp_path / "new.txt", "-o", tmp_path / "p.npz",
                    "--quiet")
    assert result.exit_code == 0, result.stderr
    predicted = np.load(tmp_path / "p.npz")
    exported = invoke("export", text_run, "-o", tmp_path / "export", "--quiet")
    assert exported.exit_code == 0, exported.stderr
    serve = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    outputs = serve(texts=tf.constant(texts))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), predicted["probabilities"],
                               rtol=1e-5, atol=1e-7)
    assert [name.decode() for name in outputs["predicted"].numpy()] == list(
        predicted["predicted"])
    document = json.loads((tmp_path / "export" / "preprocessing.json").read_text())
    assert document["export"]["inputs"] == {"texts": {"dtype": "string", "shape": [None]}}
    assert document["input"]["vocabulary"] == stored(text_run)["input"]["vocabulary"]


def test_integer_labels_stay_integers_and_a_split_column_decides_the_splits(tmp_path):
    rows = [["text", "stars", "part"]]
    words = ["good", "bad", "fine"]
    for k in range(90):
        rows.append([f"the food was {words[k % 3]} today", str(k % 3 + 1),
                     ("train", "val", "test")[0 if k < 60 else 1 if k < 75 else 2]])
    with open(tmp_path / "reviews.csv", "w", newline="") as file:
        csv.writer(file).writerows(rows)
    config = text_config(tmp_path, label_column="stars", split_column="part")
    result = invoke("run", config, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert stored(tmp_path / "run")["output"]["classes"] == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())[
        "num_train_samples"] == 60
    result = invoke("predict", tmp_path / "run", "--split", "test", "-o", tmp_path / "p.csv",
                    "--quiet")
    assert result.exit_code == 0, result.stderr
    table = read_csv((tmp_path / "p.csv").read_text())
    assert len(table) == 15 and list(table[0])[2:5] == ["prob_1", "prob_2", "prob_3"]
    assert {row["true_class"] for row in table} <= {"1", "2", "3"}
    assert {row["predicted"] for row in table} <= {"1", "2", "3"}


def test_a_target_column_makes_a_regression_with_the_training_mean_as_baseline(tmp_path):
    rows = [["text", "score"]] + [[f"the show was {'very ' * (k % 4)}good", str(k % 4 * 2.5)]
                                  for k in range(120)]
    with open(tmp_path / "reviews.csv", "w", newline="") as file:
        csv.writer(file).writerows(rows)
    result = invoke("run", text_config(tmp_path, target="score"), "--run-dir",
                    tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"]["kind"] == "regression"
    assert summary["baseline"]["description"] == "the training mean"
    document = stored(tmp_path / "run")
    assert document["output"]["names"] == ["score"] and "classes" not in document["output"]
    (tmp_path / "new.txt").write_text("the show was good\n")
    result = invoke("predict", tmp_path / "run", tmp_path / "new.txt", "-o", tmp_path / "p.csv",
                    "--quiet")
    assert result.exit_code == 0, result.stderr
    assert list(read_csv((tmp_path / "p.csv").read_text())[0]) == ["line", "score"]


def test_label_column_and_target_exclude_each_other(tmp_path):
    reviews_csv(tmp_path / "reviews.csv", rows=30)
    result = invoke("validate", text_config(tmp_path, label_column="label", target="label"))
    assert result.exit_code == 2
    assert "give label_column (classification) or target (regression), not both" in (
        result.stderr)


def _broken(tmp_path: Path, edit) -> Path:
    path = reviews_csv(tmp_path / "reviews.csv", rows=60)
    lines = path.read_bytes().split(b"\n")
    edit(lines)
    path.write_bytes(b"\n".join(lines))
    return path


@pytest.mark.parametrize(("edit", "data", "words"), [
    (lambda lines: lines.__setitem__(4, b"the caf\xe9 was good,positive"), {},
     "reviews.csv, line 5 is not UTF-8 text (byte 0xe9 at byte 8 of the line)"),
    (lambda lines: None, {"label_column": "sentiment"},
     "reviews.csv has no column 'sentiment'; its header (line 1) has: text, label"),
    (lambda lines: lines.__setitem__(6, b'"  ",negative'), {},
     "reviews.csv, line 7, column 'text': the text is empty"),
    (lambda lines: lines.__setitem__(slice(1, None), [b",positive"] * (len(lines) - 1)),
     {"missing": "drop"},
     "reviews.csv has no text left to read: every row's 'text' is empty (data.missing: drop "
     "skipped them)"),
    (lambda lines: lines.__setitem__(3, b"the bed was fine,"), {},
     "reviews.csv, line 4, column 'label' is empty; every text needs its class"),
])
def test_bad_text_files_are_exit_2_naming_file_line_and_column(edit, data, words, tmp_path):
    _broken(tmp_path, edit)
    result = invoke("run", text_config(tmp_path, **data), "--run-dir", tmp_path / "run")
    assert result.exit_code == 2, result.stderr
    assert words in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("content", "words"), [
    (b"text,label\nthe food was good,neutral\n",
     "new.csv, line 2, column 'label': class 'neutral' is not one this run was trained on; "
     "its classes are: negative, positive"),
    (b"review,label\nthe food was good,positive\n",
     "new.csv has no column 'text'; its header (line 1) has: review, label"),
    (b"text,label\nthe food was good,positive\nthe caf\xe9 was bad,negative\n",
     "new.csv, line 3 is not UTF-8 text"),
])
def test_eval_files_that_do_not_fit_the_run_are_exit_2_and_write_nothing(content, words,
                                                                          text_run, tmp_path):
    (tmp_path / "new.csv").write_bytes(content)
    before = sorted(path.name for path in text_run.iterdir())
    result = invoke("eval", text_run, tmp_path / "new.csv")
    assert result.exit_code == 2, result.stderr
    assert words in " ".join(result.stderr.split())
    assert sorted(path.name for path in text_run.iterdir()) == before


def test_predict_refuses_a_txt_with_an_empty_line_naming_it(text_run, tmp_path):
    (tmp_path / "new.txt").write_text("the food was good\n\nthe food was bad\n")
    result = invoke("predict", text_run, tmp_path / "new.txt", "-o", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert "new.txt, line 2: the text is empty" in result.stderr
    assert "trained with data.missing: error" in result.stderr  # no config to change here
    assert not (tmp_path / "p.csv").exists()
    # Blank lines after the last text are no texts: an editor's trailing newlines.
    (tmp_path / "new.txt").write_text("the food was good\nthe food was bad\n\n \n")
    result = invoke("predict", text_run, tmp_path / "new.txt", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.stderr
    assert [row["line"] for row in read_csv((tmp_path / "p.csv").read_text())] == ["1", "2"]
    (tmp_path / "empty.txt").write_text("\n")
    result = invoke("predict", text_run, tmp_path / "empty.txt")
    assert result.exit_code == 2 and "empty.txt holds no texts" in result.stderr


def test_letters_beyond_ascii_are_lowercased_in_training_predict_and_export(tmp_path):
    """TextVectorization lowercases ASCII only; seqtrain lowercases UTF-8 before it."""
    from seqtrain import runtime
    from seqtrain.data.text import tokenize

    runtime.select_device("cpu")
    inputs = {"lowercase": True, "standardize": "strip_punctuation", "split": "whitespace",
              "max_length": 4, "vocabulary": ["", "[UNK]", "café", "über", "σοφία"]}
    tokens = tokenize(["CAFÉ Über ΣΟΦΊΑ", "café über σοφία!"], inputs)
    assert tokens.tolist() == [[2, 3, 4, 0], [2, 3, 4, 0]]
    assert tokenize(["CAFÉ"], {**inputs, "lowercase": False}).tolist() == [[1, 0, 0, 0]]


@pytest.mark.slow
def test_the_vocabulary_is_the_same_in_another_process(text_run):
    code = ("import json, sys; from seqtrain import runtime; runtime.start_tensorflow('cpu'); "
            "from seqtrain.config import load_config; from seqtrain.data import build_dataset; "
            f"config = load_config({str(text_run / 'config.yaml')!r}); "
            "print(json.dumps(build_dataset(config.data, config.seed, True)"
            ".preprocessing['input']['vocabulary']))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(found.stdout.splitlines()[-1]) == stored(text_run)["input"]["vocabulary"]


@pytest.mark.slow
def test_the_shipped_text_example_needs_word_order(tmp_path):
    """The figures docs/tasks.md reports: the LSTM reads order, the bag of words cannot."""
    result = run_cli("run", ROOT / "configs" / "text_example.yaml", "--run-dir",
                     tmp_path / "run", "--quiet", "--set", "device=cpu", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test"]["accuracy"] >= 0.99
    assert summary["baseline"]["accuracy"] < 0.6
    assert summary["warnings"] == []  # a healthy run: no gradient warning


def test_a_changed_file_is_read_with_the_stored_vocabulary_and_classes(text_run, tmp_path):
    """Nothing is adapted again: new words in the file stay unknown to the run."""
    import shutil

    from seqtrain.trained import TrainedRun

    copy = tmp_path / "run"
    shutil.copytree(text_run, copy)
    path = Path(stored_path(text_run))
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"zebra zebra zebra,neutral\n" * 5)
        with pytest.raises(DataError, match="class 'neutral' is not one this run was trained on"):
            TrainedRun(copy).dataset()
        path.write_bytes(original + b"zebra zebra zebra,positive\n" * 50)
        dataset = TrainedRun(copy).dataset()
    finally:
        path.write_bytes(original)
    vocabulary = dataset.preprocessing["input"]["vocabulary"]
    assert vocabulary == stored(text_run)["input"]["vocabulary"] and "zebra" not in vocabulary
    assert dataset.preprocessing["output"]["classes"] == ["negative", "positive"]


def test_files_the_run_cannot_read_are_refused_before_tensorflow_starts(text_run, tmp_path):
    (tmp_path / "new.txt").write_bytes(b"fine\nthe caf\xe9\n")
    code = ("import sys; from typer.testing import CliRunner; from seqtrain.cli import app; "
            f"result = CliRunner().invoke(app, ['predict', {str(text_run)!r}, "
            f"{str(tmp_path / 'new.txt')!r}]); "
            "print(result.exit_code, 'tensorflow' in sys.modules); print(result.stderr)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    first, message = found.stdout.split("\n", 1)
    assert first == "2 False", found.stderr
    assert "new.txt, line 2 is not UTF-8 text" in message


def test_the_python_api_predicts_a_list_of_texts(text_run):
    import seqtrain

    predictions = seqtrain.load(text_run).predict(["the food was good, it was not bad",
                                                   "the bed was bad,\nit was not nice"])
    rows = list(predictions.rows())
    assert predictions.columns() == ["line", "predicted", "prob_negative", "prob_positive"]
    assert [row[0] for row in rows] == [1, 2]  # their places in the list, line break or not
    assert all(row[1] in ("negative", "positive") for row in rows)
    single = seqtrain.load(text_run).predict(["the food was good, it was not bad"])
    assert next(iter(single.rows()))[0] == 1  # its place in the list
    np.testing.assert_allclose(single.outputs[0], predictions.outputs[0], rtol=1e-6)
    spaced = seqtrain.load(text_run).predict(["the bed was bad, it was not nice"])
    np.testing.assert_allclose(spaced.outputs[0], predictions.outputs[1], rtol=1e-6)
    with pytest.raises(DataError, match="the inputs given, text 2: the text is empty"):
        seqtrain.load(text_run).predict(["good", "  "])
    # Characters Python calls line breaks but the tokeniser does not: kept as in a file.
    odd = ["the food was good\u2028it was not bad", "good\x1cbad"]
    listed = seqtrain.load(text_run).predict(odd)
    (Path(text_run).parent / "odd.csv").write_text(
        "text\n" + "".join(f'"{text}"\n' for text in odd), encoding="utf-8")
    filed = seqtrain.load(text_run).predict(Path(text_run).parent / "odd.csv")
    np.testing.assert_array_equal(listed.outputs, filed.outputs)


def test_the_bag_of_words_baseline_counts_words_and_ignores_their_order():
    from seqtrain.data.registry import Split
    from seqtrain.data.text import bag_of_words_baseline

    # Words 2, 3 say class 0; words 4, 5 class 1; 6 appears in both. Order is no matter.
    train = Split(np.array([[2, 6, 0], [3, 2, 0], [4, 6, 0], [5, 4, 6]]), np.array([0, 0, 1, 1]),
                  None)
    test = Split(np.array([[6, 2, 0], [6, 5, 4], [2, 4, 0]]), np.array([0, 1, 0]), None)
    baseline = bag_of_words_baseline(train, test, num_classes=2, vocabulary=7)
    assert baseline.description.startswith("bag of words")
    assert baseline.metrics["accuracy"] == 1.0  # [2, 4]: 2 is seen twice with class 0
    reordered = Split(np.array([[2, 6, 0], [4, 5, 6], [4, 2, 0]]), test.y, None)
    again = bag_of_words_baseline(train, reordered, num_classes=2, vocabulary=7)
    assert again.metrics == pytest.approx(baseline.metrics, rel=1e-12)


def test_texts_without_words_are_refused_or_dropped_as_the_missing_policy_says(text_run,
                                                                              tmp_path):
    (tmp_path / "new.txt").write_text("the food was good\n!!! ...\n")
    result = invoke("predict", text_run, tmp_path / "new.txt", "-o", tmp_path / "p.csv")
    assert result.exit_code == 2 and not (tmp_path / "p.csv").exists()
    assert "new.txt, line 2: the text has no words" in result.stderr
    rows = reviews_csv(tmp_path / "reviews.csv", rows=120)
    with open(rows, "a", encoding="utf-8") as file:
        file.write('"?!",positive\n')
    result = invoke("run", text_config(tmp_path), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "line 122, column 'text': the text has no words" in (
        result.stderr)
    assert not (tmp_path / "runs").exists()
    result = invoke("run", text_config(tmp_path), "--run-dir", tmp_path / "dropped", "--quiet",
                    "--set", "data.missing=drop", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.stderr
    (tmp_path / "more.txt").write_text("the food was good\n!!! ...\nthe food was bad\n")
    result = invoke("predict", tmp_path / "dropped", tmp_path / "more.txt",
                    "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.stderr
    assert [row["line"] for row in read_csv((tmp_path / "p.csv").read_text())] == ["1", "3"]


def test_a_label_column_of_one_class_is_refused(tmp_path):
    (tmp_path / "reviews.csv").write_text("text,label\n" + "".join(
        f"text number {n},positive\n" for n in range(30)))
    result = invoke("run", text_config(tmp_path), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "column 'label' holds one class only" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_resumed_text_run_equals_training_longer_in_one_go(text_run, tmp_path):
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(text_run, copy)
    result = invoke("resume", copy, "--set", "train.epochs=2", "--quiet")
    assert result.exit_code == 0, result.stderr
    result = invoke("run", text_run / "config.yaml", "--run-dir", tmp_path / "straight",
                    "--set", "train.epochs=2", "--quiet")
    assert result.exit_code == 0, result.stderr
    test = [json.loads((run / "summary.json").read_text())["test"]
            for run in (copy, tmp_path / "straight")]
    assert test[0] == test[1]


def test_attention_over_words_skips_padding_labels_steps_with_words_and_exports(tmp_path):
    """Text with attention: padded steps get weight 0, plots show the words, strings export."""
    from seqtrain.plots import step_labels

    reviews_csv(tmp_path / "reviews.csv", rows=160)
    config = text_config(tmp_path)
    run = tmp_path / "run"
    result = invoke("run", config, "--run-dir", run, "--set", "model.attention=dot", "--quiet")
    assert result.exit_code == 0, result.stderr
    texts = tmp_path / "texts.txt"
    texts.write_text("the food was not good, it was bad\nnot bad\n", encoding="utf-8")
    out = tmp_path / "p.npz"
    result = invoke("predict", run, texts, "--attention", "-o", out)
    assert result.exit_code == 0, result.stderr
    weights = np.load(out)["attention"]
    assert weights.shape == (2, 12)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert (weights[0, 8:] == 0).all() and (weights[1, 2:] == 0).all()  # the padding
    document = stored(run)
    vocabulary = document["input"]["vocabulary"]
    tokens = [vocabulary.index(word) if word in vocabulary else 1 for word in ("not", "bad")]
    assert step_labels(document, np.array(tokens + [0] * 10), 2) == ["not", "bad"]
    png = tmp_path / "attention.png"
    result = invoke("plot-attention", run, texts, "-o", png)
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    exported = tmp_path / "export"
    result = invoke("export", run, "-o", exported, "--quiet")
    assert result.exit_code == 0, result.stderr
    import tensorflow as tf

    serve = tf.saved_model.load(str(exported)).signatures["serving_default"]
    probabilities = serve(texts=tf.constant(["the food was not good, it was bad", "not bad"]))
    result = invoke("predict", run, texts, "-o", tmp_path / "p.csv")
    rows = read_csv((tmp_path / "p.csv").read_text())
    np.testing.assert_allclose(probabilities["probabilities"].numpy(),
                               [[float(row["prob_negative"]), float(row["prob_positive"])]
                                for row in rows], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_onnx_of_a_text_run_with_attention_takes_tokens_and_matches_predict(tmp_path):
    """ONNX takes token ids (preprocessing.json says how to make them) and agrees with predict."""
    if importlib.util.find_spec("tf2onnx") is None:
        if os.environ.get("SEQTRAIN_REQUIRE_EXTRAS"):
            pytest.fail("the onnx extra is not installed, and CI requires it")
        pytest.skip("needs the onnx extra: pip install 'seqtrain[onnx]'")
    import onnxruntime

    from seqtrain.trained import TrainedRun

    reviews_csv(tmp_path / "reviews.csv", rows=160)
    run = tmp_path / "run"
    result = invoke("run", text_config(tmp_path), "--run-dir", run, "--quiet",
                    "--set", "model.attention=additive")
    assert result.exit_code == 0, result.stderr
    result = invoke("export", run, "-o", tmp_path / "onnx", "--format", "onnx", "--json",
                    "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["checked"]["max_abs_difference"] <= 1e-4
    texts = tmp_path / "texts.txt"
    texts.write_text("the food was not good, it was bad\nnot bad\n", encoding="utf-8")
    trained = TrainedRun(run)
    tokens = trained.prepare(texts).x
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    (found,) = session.run(None, {session.get_inputs()[0].name: tokens})
    np.testing.assert_allclose(found, trained.predict(texts).outputs, atol=1e-4, rtol=1e-4)


def test_eval_refuses_overrides_of_what_the_vocabulary_was_built_with(text_run):
    for setting in ("data.lowercase=false", "data.max_tokens=50"):
        result = invoke("eval", text_run, "--set", setting)
        assert result.exit_code == 2 and f"{setting}: the model was trained on" in result.stderr
