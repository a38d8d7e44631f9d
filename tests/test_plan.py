"""`seqtrain plan`: cuDNN eligibility rules, FLOPs from layer sizes, timing, plan.json."""

from __future__ import annotations

import json

import pytest

from seqtrain.config import validate_config
from seqtrain.plan import cudnn_blockers
from tests.conftest import TINY, invoke, write_config


def config(**model):
    return validate_config({"name": "p", "data": {"task": "shifted_digit"},
                            "model": model}, {})


def test_the_default_lstm_and_gru_are_cudnn_eligible():
    assert cudnn_blockers(config(cell="lstm"), masked_mid_sequence=False) == []
    assert cudnn_blockers(config(cell="gru"), masked_mid_sequence=False) == []


@pytest.mark.parametrize("model,blocker", [
    ({"cell": "simple_rnn"}, "simple_rnn has no cuDNN kernel"),
    ({"activation": "relu"}, "activation: relu"),
    ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation: hard_sigmoid"),
    ({"recurrent_dropout": 0.1}, "recurrent_dropout: 0.1"),
    ({"unroll": True}, "unroll: true"),
    ({"cell": "gru", "reset_after": False}, "reset_after: false"),
])
def test_each_setting_that_rules_out_cudnn_is_named(model, blocker):
    blockers = cudnn_blockers(config(**model), masked_mid_sequence=False)
    assert len(blockers) == 1 and blocker in blockers[0]


def test_masks_inside_sequences_rule_out_cudnn():
    assert "strictly right-padded" in cudnn_blockers(config(), masked_mid_sequence=True)[0]


def test_plan_counts_flops_from_layer_sizes(tmp_path):
    path = write_config(tmp_path, {**TINY, "model": {"cell": "gru", "units": [8, 4],
                                                     "bidirectional": True}})
    result = invoke("plan", path, "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    # features 4, steps 6, GRU: 3 gates; layer 2 reads 2 x 8 (both directions).
    first = 2 * 3 * 2 * 8 * (4 + 8)
    second = 2 * 3 * 2 * 4 * (16 + 4)
    head = 2 * 8 * 4 * 6
    assert [layer["forward_flops_per_step"] for layer in plan["layers"]] == [first, second]
    assert plan["flops"]["forward_per_sequence"] == (first + second) * 6 + head
    assert plan["flops"]["train_step"] == 3 * plan["flops"]["forward_per_sequence"] * 32
    assert plan["flops"]["batches_per_epoch"] == 6
    assert plan["data"]["train"]["x"] == [192, 6, 4]
    assert plan["num_params"] == sum(layer["params"] for layer in plan["model"])


def test_require_cudnn_is_exit_2_naming_the_setting(tmp_path):
    path = write_config(tmp_path, {**TINY, "model": {"cell": "simple_rnn"}})
    result = invoke("plan", path, "--require-cudnn")
    assert result.exit_code == 2 and "simple_rnn has no cuDNN kernel" in result.stderr
    assert invoke("plan", write_config(tmp_path, TINY, "ok.yaml"),
                  "--require-cudnn").exit_code == 0


def test_measure_times_real_steps_and_estimates_the_run(tmp_path):
    result = invoke("plan", write_config(tmp_path, TINY), "--measure")
    assert result.exit_code == 0, result.stderr
    assert "ms per step" in result.stdout and "s for the run" in result.stdout
    assert "eligible for the cuDNN kernel" in result.stdout


def test_run_prints_the_gist_and_keeps_plan_json(tmp_path):
    result = invoke("run", write_config(tmp_path, TINY), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    assert "plan: " in result.stderr and "GFLOP per step" in result.stderr
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["devices"] == ["/device:CPU:0"] and plan["cudnn"]["eligible"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_eligibility_matches_keras_own_cudnn_conditions_for_every_combination(cell):
    # Keras decides in the layer (recurrent_dropout == 0) and in its TensorFlow backend
    # (activations, unroll, use_bias, reset_after); seqtrain's rules must agree with
    # both on the layers it actually builds, for every combination of those settings.
    import importlib
    import itertools

    from seqtrain.data import build_dataset
    from seqtrain.models import build_model

    rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")  # the module, not rnn()
    combinations = itertools.product(["tanh", "relu"], ["sigmoid", "hard_sigmoid"], [0.0, 0.1],
                                     [False, True], [True, False] if cell == "gru" else [True])
    for activation, recurrent, dropout, unroll, reset_after in combinations:
        settings = {"cell": cell, "units": 4, "activation": activation, "unroll": unroll,
                    "recurrent_activation": recurrent, "recurrent_dropout": dropout}
        if cell == "gru":
            settings["reset_after"] = reset_after
        experiment = config(**settings)
        spec = build_dataset(experiment.data, 0, False).spec
        layer = build_model(experiment.model, spec).layers[0]
        arguments = (layer.activation, layer.recurrent_activation, layer.unroll, layer.use_bias)
        keras_says = (rnn._do_gru_arguments_support_cudnn(*arguments, layer.reset_after)
                      if cell == "gru" else rnn._do_lstm_arguments_support_cudnn(*arguments))
        keras_says = keras_says and not layer.recurrent_dropout
        assert (cudnn_blockers(experiment, False) == []) == keras_says, settings


CUDNN_SCRIPT = """
import sys
from seqtrain import runtime
from seqtrain.config import validate_config
runtime.select_device(sys.argv[1])
import tensorflow as tf
from seqtrain.data import build_dataset
from seqtrain.models import build_model
config = validate_config({"name": "g", "data": {"task": "shifted_digit"},
                          "model": {"cell": sys.argv[2]}}, {})
dataset = build_dataset(config.data, 0, False)
model = build_model(config.model, dataset.spec)
trace = tf.function(lambda x: model(x, training=True)).get_concrete_function(
    tf.TensorSpec((8,) + dataset.train.x.shape[1:], tf.float32))
graph = trace.graph.as_graph_def()  # nested functions (loops, conds) are in its library
ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
print(any(op.startswith("CudnnRNN") for op in ops))
"""


@pytest.mark.gpu
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("device,expected", [("gpu", "True"), ("cpu", "False")])
def test_the_cudnn_kernel_is_in_the_traced_graph_on_a_gpu_and_not_with_device_cpu(
        cell, device, expected):
    import subprocess
    import sys

    from tests.conftest import ROOT, gpu_env

    out = subprocess.run([sys.executable, "-c", CUDNN_SCRIPT, device, cell], cwd=ROOT,
                         env=gpu_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected
