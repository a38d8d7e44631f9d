"""seqtrain's recurrent step on a CPU: Keras's cell arithmetic, a cheaper gradient.

Each time step multiplies the state by the recurrent kernel, `h @ U`. Its gradient with
respect to `h`, `dz @ U^T`, is what the backward pass waits on at every step, and
TensorFlow's CPU matmul runs that transposed product at about half the speed of a plain
one (64 x 512 by 512 x 128: 141 us against 62 us on one thread; README, Benchmarks). The
step here computes exactly what the Keras cell computes (implementation 2: the same
operations in the same order, so outputs are bit-identical), but takes that gradient as
`dz @ U_t` against a copy of the kernel transposed once per batch.

Installed on the layer instances' `inner_loop` (the step Keras hands to cuDNN on a GPU);
the batch streams (`seqtrain.streams`) split the batch around the whole model, whatever
loop is installed. The saved model stays a plain Keras model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from seqtrain.config import ExperimentConfig
    from seqtrain.runtime import Devices


def resolve(config: ExperimentConfig) -> str:
    """`seqtrain` where its step applies to `config`'s layers, else `keras`.

    `runtime.recurrent_loop: auto` takes seqtrain's step for float32 layers without
    recurrent dropout (an LSTM or GRU with it runs Keras's implementation 1, per gate); a
    GPU always runs Keras's (cuDNN where it can), which `runtime.select_device` decides.
    """
    if config.runtime.recurrent_loop == "keras" or config.precision != "float32":
        return "keras"
    if config.model.cell != "simple_rnn" and config.model.recurrent_dropout:
        return "keras"
    return "seqtrain"


def settings(config: ExperimentConfig) -> dict:
    """How `config`'s recurrent layers run on a CPU, as `runtime.select_device` takes it.

    Its `streams`, `recurrent_loop` and whether each operation runs on one thread; on a
    GPU, `select_device` keeps one stream, Keras's loop and TensorFlow's threads.
    """
    from seqtrain import streams

    return {"streams": streams.resolve(config), "recurrent_loop": resolve(config),
            "one_thread_per_op": streams.one_thread_per_operation(config)}


def install(model: keras.Model, devices: Devices) -> keras.Model:
    """Run `model` as `devices` chose: its recurrent layers with seqtrain's step, in streams."""
    import keras

    from seqtrain import streams

    if devices.recurrent_loop == "seqtrain":
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.RNN) and _applies(layer.cell):
                layer.inner_loop = _loop(layer)
    return streams.install(model, devices.streams)


def _applies(cell) -> bool:
    """Whether `cell` is one whose arithmetic `_step` repeats."""
    import keras

    if cell.compute_dtype != "float32":
        return False
    if isinstance(cell, keras.layers.SimpleRNNCell):
        return True
    return (isinstance(cell, (keras.layers.LSTMCell, keras.layers.GRUCell))
            and cell.implementation == 2)


def _product():
    """`h @ kernel`, whose gradient takes `kernel_t` (the kernel transposed) for `h`."""
    import tensorflow as tf

    @tf.custom_gradient
    def product(h, kernel, kernel_t):
        def gradient(dz):
            return tf.matmul(dz, kernel_t), tf.matmul(h, dz, transpose_a=True), None

        return tf.matmul(h, kernel), gradient

    return product


def _loop(layer: keras.layers.RNN):
    """`layer.inner_loop` as `keras.layers.RNN.inner_loop` runs it, with `_step`'s step."""
    from keras.src import backend  # `backend.rnn`, the loop Keras itself runs

    def loop(sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        return backend.rnn(_step(layer.cell, training), sequences, list(initial_state),
                           go_backwards=layer.go_backwards, mask=mask, unroll=layer.unroll,
                           input_length=sequences.shape[1],
                           zero_output_for_mask=layer.zero_output_for_mask,
                           return_all_outputs=layer.return_sequences)

    return loop


def _step(cell, training: bool):
    """The step function of `cell`: its `call` (implementation 2) with `_product`.

    The kernels are read and transposed once, outside the loop.
    """
    import keras
    import tensorflow as tf

    product = _product()

    def transposed(kernel):
        return kernel, tf.transpose(kernel)

    def dropped(inputs):
        if training and 0.0 < cell.dropout < 1.0:
            return inputs * cell.get_dropout_mask(inputs)
        return inputs

    kernel = tf.convert_to_tensor(cell.kernel)
    bias = tf.convert_to_tensor(cell.bias) if cell.use_bias else None
    units = cell.units

    if isinstance(cell, keras.layers.LSTMCell):
        recurrent = transposed(tf.convert_to_tensor(cell.recurrent_kernel))

        def lstm_step(inputs, states):
            h_tm1, c_tm1 = states
            z = tf.matmul(dropped(inputs), kernel)
            z = tf.add(z, product(h_tm1, *recurrent))
            if bias is not None:
                z = tf.add(z, bias)
            z0, z1, z2, z3 = tf.split(z, 4, axis=1)
            i = cell.recurrent_activation(z0)
            f = cell.recurrent_activation(z1)
            c = f * c_tm1 + i * cell.activation(z2)
            o = cell.recurrent_activation(z3)
            h = o * cell.activation(c)
            return h, [h, c]

        return lstm_step

    if isinstance(cell, keras.layers.GRUCell):
        full = tf.convert_to_tensor(cell.recurrent_kernel)
        input_bias, recurrent_bias = bias, None
        if bias is not None and cell.reset_after:
            input_bias, recurrent_bias = bias[0], bias[1]
        if cell.reset_after:
            gates = transposed(full)
        else:
            gates, candidate = transposed(full[:, :2 * units]), transposed(full[:, 2 * units:])

        def gru_step(inputs, states):
            h_tm1 = states[0]
            matrix_x = tf.matmul(dropped(inputs), kernel)
            if input_bias is not None:
                matrix_x = tf.add(matrix_x, input_bias)
            x_z, x_r, x_h = tf.split(matrix_x, 3, axis=-1)
            matrix_inner = product(h_tm1, *gates)
            if recurrent_bias is not None:
                matrix_inner += recurrent_bias
            # One split where Keras slices three times: the same values, fewer operations.
            recurrent = tf.split(matrix_inner, 3 if cell.reset_after else 2, axis=-1)
            z = cell.recurrent_activation(x_z + recurrent[0])
            r = cell.recurrent_activation(x_r + recurrent[1])
            if cell.reset_after:
                recurrent_h = r * recurrent[2]
            else:
                recurrent_h = product(r * h_tm1, *candidate)
            hh = cell.activation(x_h + recurrent_h)
            h = z * h_tm1 + (1 - z) * hh
            return h, [h]

        return gru_step

    recurrent = transposed(tf.convert_to_tensor(cell.recurrent_kernel))

    def simple_step(inputs, states):
        prev_output = states[0]
        h = tf.matmul(dropped(inputs), kernel)
        if bias is not None:
            h = tf.add(h, bias)
        if training and 0.0 < cell.recurrent_dropout < 1.0:
            prev_output = prev_output * cell.get_recurrent_dropout_mask(prev_output)
        output = h + product(prev_output, *recurrent)
        if cell.activation is not None:
            output = cell.activation(output)
        return output, [output]

    return simple_step
