"""`seqtrain export`: a run's model for serving without seqtrain, as a SavedModel or ONNX.

    DIR/                     a new folder, claimed first (empty), then replaced whole by the
                             finished export; never overwritten, removed if the export fails
      saved_model.pb, variables/, ...   --format saved_model: a TensorFlow SavedModel whose
                                        `serving_default` signature TF Serving calls (a text
                                        run's takes raw strings: its tokeniser is inside)
      model.onnx                        --format onnx (the `seqtrain[onnx]` extra)
      preprocessing.json                the run's: how raw inputs become the model's input,
                                        and its output predictions; plus `export`: the
                                        format, the signature's input and output names

The model is traced on the CPU, so the artifact holds no cuDNN-only kernels and serves on
any machine. Keras writes both formats (`model.export`); the ONNX file is checked against
the Keras model with onnxruntime before it is kept.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqtrain import __version__, atomic
from seqtrain.errors import SeqtrainError
from seqtrain.rundir import check_destination
from seqtrain.trained import TrainedRun

FORMATS = ("saved_model", "onnx")
ONNX_TOLERANCE = 1e-4  # largest difference from Keras's outputs an ONNX file may show
ONNX_EXTRA = "pip install 'seqtrain[onnx]'"


def export_run(path: Path, output: Path, format: str = "saved_model",  # noqa: A002
               checkpoint: str = "best") -> dict[str, Any]:
    """Write a run's model and its preprocessing to the new folder `output`.

    Args:
        path: The run directory.
        output: The folder to create; it must not exist.
        format: `saved_model` or `onnx`.
        checkpoint: `best` or `last`.

    Returns:
        What `preprocessing.json` records under `export`.

    Raises:
        SeqtrainError: An unknown format, an existing `output`, the ONNX extra missing, or
            a run or checkpoint that cannot be used (exit 2; nothing written).
    """
    if format not in FORMATS:
        raise SeqtrainError(f"--format got {format!r}; expected saved_model or onnx")
    output = Path(output)
    if output.exists():
        raise SeqtrainError(f"-o {output} already exists; seqtrain never overwrites an export: "
                            "choose a new folder")
    if format == "onnx":
        missing = [name for name in ("tf2onnx", "onnxruntime")
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise SeqtrainError(f"--format onnx needs {' and '.join(missing)}: {ONNX_EXTRA}")
    trained = TrainedRun(path, checkpoint, device="cpu")
    check_destination(output, trained.path, "export elsewhere", makes_folders=True)
    preprocessing = trained.preprocessing
    model = trained.model
    parents = [p for p in reversed(output.absolute().parents) if not p.exists()]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.mkdir()  # claims the name: of two exports to one folder, one fails here
        building = Path(tempfile.mkdtemp(dir=output.parent,
                                         prefix=atomic.temporary_prefix(output)))
    except FileExistsError:
        raise SeqtrainError(f"-o {output} already exists; seqtrain never overwrites an "
                            "export: choose a new folder") from None
    except OSError as err:
        _remove_empty([output, *reversed(parents)])
        raise SeqtrainError(f"cannot create {output}: {err.strerror or err}") from None
    try:
        if format == "saved_model" and preprocessing["input"].get("encoding") == "text":
            _export_texts(model, preprocessing, building)
            signature = _saved_model_signature(building)
        elif format == "saved_model":
            _export(model, building, "tf_saved_model")
            signature = _saved_model_signature(building)
        else:
            x = sample_inputs(preprocessing, model.input_shape)
            expected = model.predict(x, verbose=0)  # also what Keras's exporter asks first
            _export(model, building / "model.onnx", "onnx")
            signature = _checked_onnx(building / "model.onnx", x, expected)
        exported = {"format": format, **signature, "run_dir": str(trained.path.resolve()),
                    "checkpoint": checkpoint, "seqtrain_version": __version__,
                    "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic.write_json(building / "preprocessing.json", {**preprocessing, "export": exported})
        os.chmod(building, atomic.permissions(0o777))  # mkdtemp makes it owner-only
        os.rename(building, output)  # replaces the empty folder claimed above, whole
        atomic.fsync_dir(output.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        _remove_empty([output, *reversed(parents)])
        raise
    return exported


def _remove_empty(folders: list[Path]) -> None:
    """Remove what this export created (the claimed folder, new parents), if still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def _export(model, path: Path, format: str) -> None:  # noqa: A002
    """`model.export`, its messages kept off stdout (which carries only results)."""
    model.export(path, format=format, verbose=False)


def _export_texts(model, preprocessing: dict, path: Path) -> None:
    """A SavedModel whose `serving_default` takes raw texts: the run's tokeniser, then the model.

    The tokeniser is a `TextVectorization` holding the stored vocabulary (nothing adapted),
    so the signature gives what `seqtrain predict` gives: `probabilities` and the
    `predicted` class name per text (regression: `prediction`).
    """
    import keras
    import tensorflow as tf

    from seqtrain.data.text import standardized, vectorizer

    inputs, output = preprocessing["input"], preprocessing["output"]
    tokenizer = vectorizer(inputs, inputs["vocabulary"])
    tokenizer(tf.constant([""]))  # built, as the archive wants its layers
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tokenizer)

    def tokens(texts):
        return tf.cast(tokenizer(standardized(texts, inputs)), tf.int32)

    if output["kind"] == "classification":
        names = tf.constant([str(name) for name in output["classes"]])

        def serve(texts):
            probabilities = model(tokens(texts), training=False)
            return {"probabilities": probabilities,
                    "predicted": tf.gather(names, tf.argmax(probabilities, axis=-1))}
    else:
        def serve(texts):
            return {"prediction": model(tokens(texts), training=False)}

    archive.add_endpoint("serving_default", serve,
                         input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    archive.write_out(str(path), verbose=False)


def _saved_model_signature(folder: Path) -> dict[str, Any]:
    """The `serving_default` signature's input and output, as the SavedModel declares them."""
    import tensorflow as tf

    function = tf.saved_model.load(str(folder)).signatures["serving_default"]
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    return {"signature": "serving_default",
            "inputs": {name: _spec(spec) for name, spec in inputs.items()},
            "outputs": {name: _spec(spec) for name, spec in outputs.items()}}


def _spec(spec) -> dict[str, Any]:
    return {"dtype": spec.dtype.name, "shape": list(spec.shape.as_list())}


def _checked_onnx(path: Path, x, expected) -> dict[str, Any]:
    """Run the ONNX file on inputs `x`; keep it only if it gives the Keras model's `expected`.

    Raises:
        SeqtrainError: The converter changed the model's outputs beyond `ONNX_TOLERANCE`.
    """
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (found,) = session.run(None, {session.get_inputs()[0].name: x})
    difference = float(np.abs(found - expected).max())
    if not difference <= ONNX_TOLERANCE:
        raise SeqtrainError(f"the ONNX conversion changed the model's outputs by up to "
                            f"{difference:.3g} (more than {ONNX_TOLERANCE:g}); use --format "
                            "saved_model")
    def described(node) -> dict[str, Any]:  # symbolic dimensions (batch, steps) as null
        return {"dtype": node.type, "shape": [d if isinstance(d, int) else None
                                              for d in node.shape]}

    return {"inputs": {i.name: described(i) for i in session.get_inputs()},
            "outputs": {o.name: described(o) for o in session.get_outputs()},
            "checked": {"sequences": len(x), "max_abs_difference": difference}}


def sample_inputs(preprocessing: dict, input_shape: tuple, count: int = 8):
    """Random model inputs of the run's kind, the later half right-padded when it masks."""
    import numpy as np

    rng = np.random.default_rng(0)
    model_input = preprocessing["model_input"]
    steps = input_shape[1] or model_input["timesteps_in_training"]
    if model_input["name"] == "tokens":
        vocabulary = preprocessing["input"].get("vocabulary") or 2
        if isinstance(vocabulary, list):  # text: the words themselves
            vocabulary = len(vocabulary)
        return rng.integers(0, vocabulary, (count, steps)).astype(np.int32)
    x = rng.normal(size=(count, steps, model_input["features"])).astype(np.float32)
    if "padding_value" in model_input:
        x[count // 2:, steps // 2:] = model_input["padding_value"]
    return x
