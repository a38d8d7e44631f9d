"""Every private Keras and TensorFlow API seqtrain uses, behind a check of their versions.

The CPU speed layer (`seqtrain.tuning`) reaches into Keras where no public API does what it
needs: the loop Keras runs a recurrent layer with, the per-instance hooks it calls
(`inner_loop`, `call`), the dropout masks a cell keeps, the cache of Keras's saver, and the
`tf.function` behind `model.train_function`. Those are internals: they may move in any
release. So they are used only here, and only while the installed Keras and TensorFlow are
in the range the tests cover (`KERAS`, `TENSORFLOW`: the minimum-versions job of CI and the
development versions). Outside it `usable()` says no, once, in one line on stderr, and
seqtrain trains plain Keras (`runtime.cpu_tuning: off`): slower, never wrong, never a crash.

Nothing here imports TensorFlow at module level; the version check reads package metadata.
"""

from __future__ import annotations

import inspect
import sys
from importlib import metadata

# [lowest, highest] minor versions the tests run against (see the module's docstring).
KERAS = ((3, 11), (3, 15))
TENSORFLOW = ((2, 16), (2, 21))

_verdict: str | None = None  # None: not checked yet; "": usable; else why not


def _minor(version: str) -> tuple[int, int]:
    major, minor = (version.split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def check(keras_version: str, tensorflow_version: str) -> str:
    """Why the internals cannot be trusted with these versions, or "" if they can."""
    for name, version, (low, high) in (("Keras", keras_version, KERAS),
                                       ("TensorFlow", tensorflow_version, TENSORFLOW)):
        try:
            inside = low <= _minor(version) <= high
        except ValueError:
            inside = False
        if not inside:
            return (f"{name} {version} is outside the versions seqtrain's CPU speed layer is "
                    f"tested with ({low[0]}.{low[1]} to {high[0]}.{high[1]})")
    return ""


def usable() -> bool:
    """Whether the installed versions are in the tested range; says once if they are not."""
    global _verdict
    if _verdict is None:
        try:
            _verdict = check(metadata.version("keras"), _tensorflow_version())
        except metadata.PackageNotFoundError as err:
            _verdict = f"{err.name} is not installed as a package"
        if _verdict:
            try:
                print(f"seqtrain: warning: {_verdict}; training runs plain Keras "
                      "(runtime.cpu_tuning: off)", file=sys.stderr, flush=True)
            except OSError:  # stderr closed: the summary's speed settings still say it
                pass
    return not _verdict


# The names TensorFlow's wheels are published under.
_TENSORFLOW_PACKAGES = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel",
                        "tf-nightly")


def _tensorflow_version() -> str:
    for name in _TENSORFLOW_PACKAGES:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    raise metadata.PackageNotFoundError("tensorflow")


def rnn_loop():
    """The function `keras.layers.RNN` runs its step with (`backend.rnn`)."""
    from keras.src import backend

    return backend.rnn


def set_inner_loop(layer, loop) -> None:
    """Make `layer` (a `keras.layers.RNN`) run `loop` where it runs its `inner_loop`."""
    layer.inner_loop = loop


def set_call(model, call) -> None:
    """Make `model` run `call` instead of its class's `call`; the saved model is unchanged."""
    model.call = call


def has_own_call(model) -> bool:
    """Whether `set_call` was applied to `model` already."""
    return "call" in vars(model)


def set_dropout_masks(cell, masks: dict) -> None:
    """Give `cell` the dropout masks its next call uses (`RNN.call` clears them after).

    `masks` holds `input` and/or `recurrent`: each a tensor, or a list of per-gate tensors.
    """
    if "input" in masks:
        cell._dropout_mask = masks["input"]
    if "recurrent" in masks:
        cell._recurrent_dropout_mask = masks["recurrent"]


# The kinds of object Keras' saver walks in a compiled Sequential model.
_SAVED_KINDS = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def cache_saving_skipsets() -> None:
    """Make Keras' saver find the attribute lists it caches.

    For each kind of object it saves, Keras lists the attributes of a fresh base instance to
    skip (`saving_lib.get_attr_skipset`). It caches the list under
    `saving_attr_skipset_<kind>` but looks it up under `saving_attr_skiplist_<kind>`, so
    every save builds throwaway layers, metrics and an optimizer again. Storing the same
    lists under the key it reads makes saves cheaper; the file is the same.
    """
    from keras.src.backend.common import global_state
    from keras.src.saving.saving_lib import get_attr_skipset

    for kind in _SAVED_KINDS:
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            try:
                global_state.set_global_attribute(key, get_attr_skipset(kind))
            except ValueError:  # a kind this Keras does not know: it never looks it up
                pass


def multi_step_function(function):
    """The `tf.function` behind Keras's `model.train_function` or `test_function`, or None.

    Keras (TensorFlow backend) wraps it in a closure over `multi_step_on_iterator`; None
    when it is not there, or under `run_eagerly` (no `tf.function` to trace).
    """
    try:
        inner = inspect.getclosurevars(function).nonlocals["multi_step_on_iterator"]
    except (KeyError, TypeError):
        return None
    return inner if hasattr(inner, "get_concrete_function") else None
