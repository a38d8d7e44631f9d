"""Config names to Keras layers, optimizers and the masked loss."""

from __future__ import annotations

import numpy as np
import pytest

from seqtrain import runtime
from seqtrain.config import ModelConfig, TrainConfig
from seqtrain.data import TaskSpec
from seqtrain.models import build_model, compile_model

SPEC = TaskSpec(timesteps=5, features=3, num_classes=4, per_step=True)


@pytest.fixture(autouse=True, scope="module")
def _tensorflow():
    runtime.select_device("cpu")


@pytest.mark.parametrize("cell,layer,gates", [("simple_rnn", "SimpleRNN", 1), ("lstm", "LSTM", 4),
                                              ("gru", "GRU", 3)])
def test_each_cell_name_maps_to_its_keras_layer(cell, layer, gates):
    model = build_model(ModelConfig(cell=cell, units=7), SPEC)
    recurrent = model.layers[0]
    assert type(recurrent).__name__ == layer
    assert model.output_shape == (None, None, 4)  # sequences of any length
    kernel_params = gates * (7 * (3 + 7) + 7)  # input + recurrent kernels and bias per gate
    if cell == "gru":
        kernel_params += gates * 7  # reset_after=True keeps a second bias
    assert recurrent.count_params() == kernel_params


def test_stacked_layers_pass_sequences_and_a_per_sequence_head_takes_the_last_state():
    model = build_model(ModelConfig(num_layers=3, units=6), SPEC)
    assert [layer.return_sequences for layer in model.layers[:3]] == [True, True, True]
    per_sequence = TaskSpec(timesteps=5, features=3, num_classes=4, per_step=False)
    model = build_model(ModelConfig(num_layers=2, units=6), per_sequence)
    assert [layer.return_sequences for layer in model.layers[:2]] == [True, False]
    assert model.output_shape == (None, 4)


@pytest.mark.parametrize("name,cls", [("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSprop"),
                                      ("adamw", "AdamW")])
def test_optimizer_names_learning_rate_and_clipnorm(name, cls):
    model = build_model(ModelConfig(units=4), SPEC)
    compile_model(model, TrainConfig(optimizer=name, learning_rate=0.01, clipnorm=2.0), SPEC)
    assert type(model.optimizer).__name__ == cls
    assert model.optimizer.clipnorm == 2.0
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)


def test_steps_with_zero_weight_count_neither_in_loss_nor_accuracy():
    model = build_model(ModelConfig(units=4), SPEC)
    compile_model(model, TrainConfig(), SPEC)
    x = np.random.default_rng(0).random((8, 5, 3), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 4, (8, 5))
    weights = np.ones((8, 5), np.float32)
    weights[:, :2] = 0.0
    masked = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    # The same numbers from the weighted steps alone, computed by hand.
    probs = model.predict(x, verbose=0)[:, 2:]
    picked = np.take_along_axis(probs, y[:, 2:, None], axis=-1)[..., 0]
    assert masked["loss"] == pytest.approx(float(-np.log(picked).mean()), rel=1e-5)
    assert masked["accuracy"] == pytest.approx(float((probs.argmax(-1) == y[:, 2:]).mean()))


def test_a_list_of_units_stacks_layers_of_those_widths():
    config = ModelConfig(units=[12, 6], cell="gru")
    assert config.num_layers == 2
    model = build_model(config, SPEC)
    assert [layer.units for layer in model.layers[:2]] == [12, 6]
    with pytest.raises(ValueError, match="units lists 2 layers but num_layers is 3"):
        ModelConfig(units=[12, 6], num_layers=3)


def test_bidirectional_layers_read_both_ways_and_concatenate():
    model = build_model(ModelConfig(units=5, bidirectional=True, num_layers=2), SPEC)
    assert [type(layer).__name__ for layer in model.layers] == ["Bidirectional", "Bidirectional",
                                                                 "Dense"]
    assert model.layers[0].output.shape == (None, None, 10)  # any length


def test_cell_options_reach_the_keras_layers():
    gru = build_model(ModelConfig(cell="gru", units=4, recurrent_dropout=0.2, unroll=True,
                                  reset_after=False, recurrent_activation="hard_sigmoid"),
                      SPEC).layers[0]
    assert (gru.recurrent_dropout, gru.unroll, gru.reset_after) == (0.2, True, False)
    assert gru.cell.recurrent_activation.__name__ == "hard_sigmoid"
    with pytest.raises(ValueError, match="simple_rnn has none"):
        ModelConfig(cell="simple_rnn", recurrent_activation="tanh")
    with pytest.raises(ValueError, match="gru only"):
        ModelConfig(cell="lstm", reset_after=False)


def test_an_embedding_reads_integer_tokens():
    spec = TaskSpec(timesteps=5, features=1, num_classes=4, per_step=True, tokens=6)
    model = build_model(ModelConfig(units=4, embedding_dim=3), spec)
    assert type(model.layers[0]).__name__ == "Embedding"
    assert model.predict(np.zeros((2, 5), "int32"), verbose=0).shape == (2, 5, 4)


def test_clipvalue_and_weight_decay_reach_the_optimizer():
    model = build_model(ModelConfig(units=4), SPEC)
    compile_model(model, TrainConfig(clipvalue=0.5, weight_decay=0.01, optimizer="adamw"), SPEC)
    assert model.optimizer.clipvalue == 0.5 and model.optimizer.weight_decay == 0.01


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adamw"])
def test_the_training_step_is_traced_once(name):
    # An optimizer whose slots appear inside the first traced step makes TensorFlow trace
    # the step twice (every run's first epoch paid for it); compile_model creates them first.
    model = build_model(ModelConfig(units=4), SPEC)
    compile_model(model, TrainConfig(optimizer=name, steps_per_execution=4), SPEC)
    slots = len(model.optimizer.variables)
    traced = []
    step = model.train_step
    model.train_step = lambda data: traced.append(1) or step(data)
    x = np.random.default_rng(0).random((24, 5, 3), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 4, (24, 5))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert len(traced) == 1
    assert len(model.optimizer.variables) == slots and int(model.optimizer.iterations) == 12


@pytest.mark.parametrize("cell,bidirectional", [("lstm", False), ("gru", True)])
def test_mixed_float16_trains_on_padded_sequences_without_skipping_steps(cell, bidirectional):
    # The padding value (-1e9) is -inf in float16, and -inf x 0 is NaN in a kernel gradient:
    # the loss scale optimizer would then skip every step, silently. Masking stays float32
    # and zeroes padded steps before the recurrent layers cast them.
    from seqtrain.data.preprocessing import PAD

    spec = TaskSpec(timesteps=9, features=3, num_classes=2, per_step=True, masked=True)
    model = build_model(ModelConfig(cell=cell, units=8, bidirectional=bidirectional), spec,
                        precision="mixed_float16")
    compile_model(model, TrainConfig(learning_rate=0.01), spec, precision="mixed_float16")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 9, 3)).astype("float32")
    lengths = rng.integers(2, 10, size=64)
    steps = np.arange(9)[None, :] < lengths[:, None]
    x[~steps] = PAD
    y = (x[..., 0] > 0).astype("int32")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, sample_weight=steps.astype("float32"), batch_size=16, epochs=2, verbose=0)
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert all((b != a).any() for b, a in zip(before, after, strict=True))  # every step ran
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0 ** 15  # never halved by a NaN
