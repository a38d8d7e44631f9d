"""Runs too large for this machine's memory are refused before anything is written."""

from __future__ import annotations

import pytest

from seqtrain import resources
from seqtrain.config import validate_config
from seqtrain.data import build_dataset
from tests.conftest import TINY, invoke


@pytest.mark.parametrize("override,words", [
    ("model.units=100000000000", ["parameters", "Lower model.units"]),
    ("data.num_samples=10000000000", ["10,000,000,000 sequences of 6 steps need about",
                                      "TiB"]),
    ("data.sequence_length=10000000000", ["of 10,000,000,000 steps need about"]),
])
def test_a_run_that_cannot_fit_is_exit_2_naming_the_estimate(override, words, tiny_config,
                                                             tmp_path):
    for command in (["run", tiny_config, "--runs-dir", tmp_path / "runs"],
                    ["plan", tiny_config]):
        result = invoke(*command, "--set", override)
        assert result.exit_code == 2, result.stderr
        for word in [*words, "available"]:
            assert word in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_parameter_count_is_keras_own():
    from seqtrain.models import build_model

    recall = {**TINY["data"], "mode": "recall"}
    for data, model in ((TINY["data"], {"cell": "gru", "units": [8, 5], "bidirectional": True}),
                        (TINY["data"], {"cell": "lstm", "units": 7, "embedding_dim": 3}),
                        (TINY["data"], {"cell": "simple_rnn", "units": 4}),
                        (recall, {"cell": "gru", "units": 6, "bidirectional": True,
                                  "attention": "additive"}),
                        (recall, {"cell": "lstm", "units": 5, "attention": "dot"})):
        config = validate_config({**TINY, "data": data, "model": model}, {})
        dataset = build_dataset(config.data, 0, bool(config.model.embedding_dim))
        keras_model = build_model(config.model, dataset.spec)
        assert resources.parameter_count(config, dataset.spec) == keras_model.count_params()


def test_the_memory_available_is_read_from_the_kernel():
    available = resources.available_bytes()
    assert available is None or available > 2**20
