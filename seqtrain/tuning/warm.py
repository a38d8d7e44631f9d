"""Warm validation: Keras's validation step traced while the first training call runs.

Part of the CPU speed layer (`runtime.warm_validation`, off with `runtime.cpu_tuning:
off`); it finds Keras's traced functions through `internals`. Imported only after
`runtime.prepare()`.
"""

from __future__ import annotations

import threading

import keras
import tensorflow as tf

from seqtrain.tuning import internals


class WarmValidation(keras.callbacks.Callback):
    """Traces Keras's validation function while the first training call runs.

    Keras traces the training step into a graph at the first training call, which then
    spends a while in TensorFlow alone (building the graph's executor) before the steps
    run; the test step (validation) is traced at the
    first validation, after the first epoch's training. Here, as the first epoch begins, the
    training function is traced for the training data's element spec (what Keras's first
    call would do, and then finds done), and a thread traces the test function for the
    validation data's element spec while the first training call runs without Python. The
    thread also calls the test function once on an empty dataset: that builds its executor
    and runs no step, so the metrics (the training ones too) stay untouched. Validation
    waits for the thread. Where Keras's internals are not as expected, nothing is done and
    Keras traces as usual (and reports any error from there).

    Args:
        training_spec: The element spec of the training dataset given to `fit`.
        validation: The validation dataset given to `fit`.
    """

    def __init__(self, training_spec, validation: tf.data.Dataset):
        super().__init__()
        self.training_spec, self.validation = training_spec, validation
        self._thread: threading.Thread | None = None
        self._tried = False

    def on_epoch_begin(self, epoch, logs=None):
        # Not in on_train_begin: the first epoch's time (`EpochLog`) includes the tracing.
        if self._tried:  # later epochs, and a second `fit` (a resumed run), find both traced
            return
        self._tried = True
        self.model.make_test_function()
        train, test = (internals.multi_step_function(self.model.train_function),
                       internals.multi_step_function(self.model.test_function))
        if train is None or test is None:
            return
        train.get_concrete_function(tf.data.IteratorSpec(self.training_spec))
        self._thread = threading.Thread(target=self._warm, args=(test,), daemon=True,
                                        name="seqtrain-warm-validation")
        self._thread.start()

    def _warm(self, function) -> None:
        try:
            function.get_concrete_function(tf.data.IteratorSpec(self.validation.element_spec))
            if self.model.steps_per_execution > 1:  # one step reads a batch unconditionally
                function(iter(self.validation.take(0)))
        except Exception:  # validation traces it again, and raises the error there
            pass

    def on_test_begin(self, logs=None):
        self.join()

    def join(self) -> None:
        """Wait for the thread, if one runs (also before leaving `fit` on an error)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
