"""seqtrain's recurrent step on a CPU: Keras's cell arithmetic, with fewer operations.

Each time step multiplies the state by the recurrent kernel, `h @ U`. Its gradient with
respect to `h`, `dz @ U^T`, is what the backward pass waits on at every step, and
TensorFlow's CPU matmul runs that transposed product markedly slower than a plain one. The
step here takes that gradient as `dz @ U_t` against a copy of the kernel transposed once
per batch.

In inference it computes exactly what the Keras cell computes (implementation 2: the same
operations in the same order, so outputs are bit-identical). In training, an LSTM or GRU
with a bias gets its inputs with a column of ones and its bias as a kernel row
(`_training_step`), so one product takes a step's input, bias and state: per step, three
to five operations fewer forward and six to ten backward. The sums are taken in another
order: the same values but for the last bits. docs/performance.md has the measurements.

Installed as the layer instances' `inner_loop` (the step Keras hands to cuDNN on a GPU),
through `internals`; the saved model stays a plain Keras model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqtrain.models import recurrent_layers
from seqtrain.tuning import internals

if TYPE_CHECKING:
    import keras

    from seqtrain.config import ExperimentConfig


def resolve(config: ExperimentConfig) -> str:
    """`seqtrain` where its step applies to `config`'s layers, else `keras`.

    `runtime.recurrent_loop: auto` takes seqtrain's step for float32 layers without
    recurrent dropout (an LSTM or GRU with it runs Keras's implementation 1, per gate).
    """
    if config.runtime.recurrent_loop == "keras" or config.precision != "float32":
        return "keras"
    if config.model.cell != "simple_rnn" and config.model.recurrent_dropout:
        return "keras"
    return "seqtrain"


def install(model: keras.Model) -> keras.Model:
    """Run `model`'s recurrent layers with seqtrain's step, where it applies."""
    for layer in recurrent_layers(model):
        if _applies(layer.cell):
            internals.set_inner_loop(layer, _loop(layer))
    return model


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
    """`layer.inner_loop` as `keras.layers.RNN.inner_loop` runs it, with seqtrain's step.

    `_training_step` in training where it applies, else `_step`.
    """
    import tensorflow as tf

    rnn = internals.rnn_loop()  # the loop Keras itself runs

    def loop(sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if training and _folds_bias(layer.cell):
            step = _training_step(layer.cell, tf.shape(sequences)[0])
            sequences = tf.concat([sequences, tf.ones_like(sequences[..., :1])], axis=-1)
        else:
            step = _step(layer.cell, training)
        return rnn(step, sequences, list(initial_state),
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
            return _lstm_gates(cell, z, c_tm1)

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


def _lstm_gates(cell, z, c_tm1):
    """An LSTM step's output and states from its gates' inputs `z`, as Keras computes them."""
    import tensorflow as tf

    z0, z1, z2, z3 = tf.split(z, 4, axis=1)
    i = cell.recurrent_activation(z0)
    f = cell.recurrent_activation(z1)
    c = f * c_tm1 + i * cell.activation(z2)
    o = cell.recurrent_activation(z3)
    h = o * cell.activation(c)
    return h, [h, c]


# --- training: the bias folded into the products ------------------------------------------

def _folds_bias(cell) -> bool:
    """Whether `cell` trains with `_training_step`: an LSTM or GRU with a bias."""
    import keras

    return isinstance(cell, (keras.layers.LSTMCell, keras.layers.GRUCell)) and cell.use_bias


def _joined_product():
    """`[x, h] @ [Wb; U]`, a step's input and state products as one.

    `x` ends in the column of ones and `Wb` in the bias. The gradient takes `dz @ Wb_t` for
    `x` (pruned where nothing uses it) and `dz @ U_t` for `h`, and the kernel's as one
    product, `[x, h]^T dz`.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def product(x, h, kernel, input_t, recurrent_t):
        joined = tf.concat([x, h], axis=1)

        def gradient(dz):
            return (tf.matmul(dz, input_t), tf.matmul(dz, recurrent_t),
                    tf.matmul(joined, dz, transpose_a=True), None, None)

        return tf.matmul(joined, kernel), gradient

    return product


def _training_step(cell, batch):
    """The training step of an LSTM or GRU with a bias, for inputs ending in a column of ones.

    The bias is a kernel's last row, so the products add it. An LSTM takes its input, bias
    and state in one product (`_joined_product`), where Keras takes two products and two
    sums. So does a GRU for its update and reset gates (and, reset_after, its candidate's
    state part, the input's rows zero there); its candidate's input part is a product of
    its own, and the state is updated as `hh + z * (h - hh)`. The values are Keras's,
    summed in another order: they differ in the last bits (gradients within 1e-5 of
    Keras's). Inference keeps Keras's operations (`_step`).

    The dropout mask is drawn as Keras draws it, for `batch` rows of the cell's inputs,
    and keeps the column of ones.
    """
    import keras
    import tensorflow as tf

    kernel, bias = tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(cell.bias)
    recurrent, units = tf.convert_to_tensor(cell.recurrent_kernel), cell.units
    features = kernel.shape[0]

    dropout_mask = None  # the column of ones stays
    if 0.0 < cell.dropout < 1.0:
        dropout_mask = tf.concat([cell.get_dropout_mask(tf.ones((batch, features), kernel.dtype)),
                                  tf.ones((batch, 1), kernel.dtype)], axis=1)

    def dropped(inputs):
        return inputs if dropout_mask is None else inputs * dropout_mask

    if isinstance(cell, keras.layers.LSTMCell):
        joined = _joined_product()
        input_kernel = tf.concat([kernel, bias[None, :]], axis=0)
        kernels = (tf.concat([input_kernel, recurrent], axis=0),
                   tf.transpose(input_kernel), tf.transpose(recurrent))

        def lstm_step(inputs, states):
            h_tm1, c_tm1 = states
            return _lstm_gates(cell, joined(dropped(inputs), h_tm1, *kernels), c_tm1)

        return lstm_step

    # The update and reset gates take input, bias and state in one product, as an LSTM
    # does; a reset_after GRU's third block there is the state's candidate part (no input:
    # zeros above the bias row), whose input part is its own product.
    zr, candidate = slice(0, 2 * units), slice(2 * units, 3 * units)
    if cell.reset_after:  # Keras's bias: input and recurrent rows
        input_bias, recurrent_bias = bias[0], bias[1]
        joined_bias = tf.concat([input_bias[zr] + recurrent_bias[zr], recurrent_bias[candidate]],
                                axis=0)
        joined_input = tf.concat([kernel[:, zr], tf.zeros_like(kernel[:, candidate])], axis=1)
        from_state = recurrent
    else:
        input_bias = bias
        joined_bias, joined_input, from_state = bias[zr], kernel[:, zr], recurrent[:, zr]
        product = _product()
        state_candidate = (recurrent[:, candidate], tf.transpose(recurrent[:, candidate]))
    joined_input = tf.concat([joined_input, joined_bias[None, :]], axis=0)
    joined, kernels = _joined_product(), (
        tf.concat([joined_input, from_state], axis=0),
        tf.transpose(joined_input), tf.transpose(from_state))
    input_candidate = tf.concat([kernel[:, candidate], input_bias[None, candidate]], axis=0)

    def gru_step(inputs, states):
        h_tm1 = states[0]
        inputs = dropped(inputs)
        gates = tf.split(joined(inputs, h_tm1, *kernels), 3 if cell.reset_after else 2, axis=-1)
        z = cell.recurrent_activation(gates[0])
        r = cell.recurrent_activation(gates[1])
        if cell.reset_after:
            recurrent_h = r * gates[2]
        else:
            recurrent_h = product(r * h_tm1, *state_candidate)
        hh = cell.activation(tf.matmul(inputs, input_candidate) + recurrent_h)
        h = hh + z * (h_tm1 - hh)
        return h, [h]

    return gru_step
