"""Config loading, overrides and error messages, through the CLI where a user meets them."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from seqtrain.config import ExperimentConfig, dump_config, load_config
from seqtrain.errors import ConfigError
from tests.conftest import CONFIGS, TINY, invoke, write_config

SHIPPED = sorted(CONFIGS.glob("*.yaml"))


def test_the_shipped_configs_are_there():
    names = {path.name for path in SHIPPED}
    assert {"shifted_digit_lstm.yaml", "shifted_digit_gru.yaml",
            "shifted_digit_simple_rnn.yaml", "shifted_digit_seed.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_round_trips(path: Path, tmp_path: Path):
    config = load_config(path)
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(dump_config(config))
    assert load_config(resolved) == config


def test_validate_prints_the_resolved_config_with_defaults():
    result = invoke("validate", CONFIGS / "shifted_digit_lstm.yaml", "--set", "model.cell=gru")
    assert result.exit_code == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["model"]["cell"] == "gru"
    assert resolved["train"]["steps_per_execution"] == 16  # a default, filled in
    assert resolved["runtime"] == {"cpu_tuning": "auto", "intra_op_threads": None,
                                   "inter_op_threads": None,
                                   "cpu_devices": 1, "streams": "auto",
                                   "recurrent_loop": "auto", "deterministic": True,
                                   "warm_validation": True}
    assert (resolved["distribution"], resolved["precision"]) == ("none", "float32")
    assert "valid" in result.stderr


def test_overrides_are_parsed_like_yaml_and_converted_by_the_schema(tiny_config: Path):
    config = load_config(tiny_config, ["train.learning_rate=1e-3", "train.clipnorm=1",
                                       "model.num_layers=2", "train.shuffle=false",
                                       "data.split.train=0.7", "data.split.val=0.2"])
    assert config.train.learning_rate == pytest.approx(0.001)
    assert config.train.clipnorm == 1.0
    assert config.model.num_layers == 2
    assert config.train.shuffle is False
    assert config.data.split.train == 0.7


def test_an_override_can_add_a_section_the_file_leaves_out(tmp_path: Path):
    path = write_config(tmp_path, {"name": "x", "data": {"task": "shifted_digit"}})
    assert load_config(path, ["runtime.deterministic=false"]).runtime.deterministic is False


def _bad(tmp_path: Path, change) -> Path:
    config = copy.deepcopy(TINY)
    change(config)
    return write_config(tmp_path, config)


def _set(path: str, value):
    def change(config):
        *parents, key = path.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return change


def _text(text: str):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        return path
    return make


# (case id, how to make the config file, extra CLI args, words the message must contain)
BAD = [
    ("unknown key", lambda t: _bad(t, _set("train.epochz", 3)), [],
     ["train.epochz", "Did you mean 'epochs'"]),
    ("wrong type", lambda t: _bad(t, _set("model.units", "many")), [],
     ["model.units", "'many'", "whole number"]),
    ("negative units", lambda t: _bad(t, _set("model.units", -3)), [],
     ["model.units", "-3", ">= 1"]),
    ("float epochs", lambda t: _bad(t, _set("train.epochs", 2.5)), [],
     ["train.epochs", "2.5", "whole number"]),
    ("unknown cell", lambda t: _bad(t, _set("model.cell", "lstn")), [],
     ["model.cell", "'lstn'", "simple_rnn, lstm, gru", "Did you mean 'lstm'"]),
    ("unknown optimizer", lambda t: _bad(t, _set("train.optimizer", "adamm")), [],
     ["train.optimizer", "Did you mean 'adam'"]),
    ("cell in capitals", lambda t: _bad(t, _set("model.cell", "LSTM")), [],
     ["model.cell", "got 'LSTM'", "Did you mean 'lstm'"]),
    ("unknown task", lambda t: _bad(t, _set("data.task", "shifted_digt")), [],
     ["data.task", "Unknown task 'shifted_digt'", "Did you mean 'shifted_digit'"]),
    ("parameter the task does not take", lambda t: _bad(t, _set("data.units", 8)), [],
     ["data.units", "unknown key"]),
    ("split does not sum to 1", lambda t: _bad(t, _set("data.split.test", 0.3)), [],
     ["data.split", "sum to 1"]),
    ("shift leaves no target", lambda t: _bad(t, _set("data.shift", 6)), [],
     ["data.shift", "sequence_length"]),
    ("dropout out of range", lambda t: _bad(t, _set("model.dropout", 1.5)), [],
     ["model.dropout", "1.5", "< 1"]),
    ("boolean learning rate", lambda t: _bad(t, _set("train.learning_rate", True)), [],
     ["train.learning_rate", "boolean"]),
    ("infinite learning rate", lambda t: _bad(t, _set("train.learning_rate", float("inf"))), [],
     ["train.learning_rate", "got inf", "expected a finite number"]),
    ("nan dropout", None, ["--set", "model.dropout=.nan"],
     ["model.dropout", "got nan", "expected a finite number"]),
    ("nan recurrent dropout", None, ["--set", "model.recurrent_dropout=.nan"],
     ["model.recurrent_dropout", "got nan", "expected a finite number"]),
    ("infinite plateau factor", lambda t: _bad(t, _set("train.plateau_factor", float("-inf"))),
     [], ["train.plateau_factor", "got -inf", "expected a finite number"]),
    ("empty units list", lambda t: _bad(t, _set("model.units", [])), [],
     ["model.units", "got an empty list; expected at least 1 item"]),
    ("name escapes the runs folder", lambda t: _bad(t, _set("name", "../../etc")), [],
     ["name", "'../../etc'"]),
    ("unknown device", lambda t: _bad(t, _set("device", "tpu")), [],
     ["device", "'tpu'", "auto, cpu, gpu, gpu:N or gpu:N,M"]),
    ("missing data section", lambda t: write_config(t, {"name": "x"}), [],
     ["data", "required but missing"]),
    ("bad YAML syntax", _text("name: x\ndata: {task: shifted_digit\nmodel: [\n"), [],
     ["invalid YAML", "line"]),
    ("empty file", _text(""), [], ["empty"]),
    ("a list, not a mapping", _text("- name: x\n"), [], ["mapping", "a list"]),
    ("a key given twice", _text("name: x\nname: y\ndata: {task: shifted_digit}\n"), [],
     ["name (line 2)", "twice"]),
    ("unsafe python tag", _text("name: !!python/object/apply:os.system ['true']\n"), [],
     ["invalid YAML", "tags"]),
    ("missing file", lambda t: t / "nowhere.yaml", [], ["nowhere.yaml", "not found"]),
    ("override to an unknown path", None, ["--set", "train.lr=0.1"],
     ["train.lr", "--set train.lr=0.1", "Did you mean 'learning_rate'"]),
    ("override without =", None, ["--set", "train.epochs"], ["key.path=value"]),
    ("override with a bad value", None, ["--set", "train.epochs=many"],
     ["train.epochs", "'many'"]),
    ("override through a value", None, ["--set", "name.first=x"], ["not a section"]),
]


@pytest.mark.parametrize("case", BAD, ids=[case[0] for case in BAD])
def test_bad_input_exits_2_naming_the_field_without_traceback_or_run_dir(case, tmp_path: Path):
    _, make, extra, words = case
    config = make(tmp_path) if make else write_config(tmp_path)
    runs = tmp_path / "runs"
    result = invoke("run", config, "--runs-dir", runs, *extra)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    for word in words:
        assert word in result.stderr, f"{word!r} not in:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert not runs.exists()


def test_validate_reports_the_same_errors_with_exit_2(tmp_path: Path):
    result = invoke("validate", _bad(tmp_path, _set("model.units", 0)))
    assert result.exit_code == 2
    assert "model.units" in result.stderr


def test_every_problem_is_reported_at_once_with_its_yaml_line(tmp_path: Path):
    path = tmp_path / "many.yaml"
    path.write_text(
        "name: many\n"
        "data:\n"
        "  task: shifted_digit\n"
        "  sequence_lenght: 20\n"
        "model:\n"
        "  units: -3\n"
        "train:\n"
        "  optimizer: nadam\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["model.cell=lstn"])
    message = str(caught.value)
    assert "4 problems" in message
    assert "data.sequence_lenght (line 4)" in message
    assert "Did you mean 'sequence_length'" in message
    assert "model.units (line 6): got -3" in message
    assert "train.optimizer (line 8)" in message
    assert "model.cell (--set model.cell=lstn)" in message


def test_the_resolved_config_is_what_the_schema_says(tiny_config: Path):
    config = load_config(tiny_config)
    assert isinstance(config, ExperimentConfig)
    assert config.data.task == "shifted_digit"
    assert config.data.layout == "sequence"
    assert config.model.activation == "tanh"


# What pydantic says in its own words; none of it may reach a user.
PYDANTIC_WORDING = ("Input should", "Field required", "validation error", "type=", "pydantic",
                    "Extra inputs are not permitted", "Value error,", "should have at",
                    "after validation", "For further information", "String should",
                    "List should")
SERIES = {"task": "csv_series", "path": "load.csv", "columns": ["load"], "target": "load"}

# (pydantic's error type, a change to TINY, words the message must hold)
ERROR_TYPES = [
    ("list_type", _set("data", {**SERIES, "columns": "load"}),
     "data.columns (line ?): got 'load'; expected a list of strings, such as [load]"),
    ("list_type of numbers", _set("model.units", {"first": 8}),
     "model.units (line ?): got a mapping; expected a whole number"),
    ("too_short", _set("data", {**SERIES, "columns": []}),
     "data.columns (line ?): got an empty list; expected at least 1 item"),
    ("list item string_type", _set("data", {**SERIES, "columns": ["load", 3]}),
     "data.columns[1] (line ?): got 3; expected a string"),
    ("dict_type", _set("train", [1, 2]), "train (line ?): got a list; expected a section"),
    ("int_type", _set("train.epochs", "ten"), "train.epochs (line ?): got 'ten'; expected a "
     "whole number"),
    ("int_from_float", _set("train.batch_size", 2.5), "train.batch_size (line ?): got 2.5; "
     "expected a whole number"),
    ("float_type", _set("model.dropout", [0.1]), "model.dropout (line ?): got a list; "
     "expected a number"),
    ("float_parsing", _set("train.learning_rate", "fast"), "train.learning_rate (line ?): got "
     "'fast'; expected a number"),
    ("bool_type", _set("model.unroll", [True]), "model.unroll (line ?): got a list; expected "
     "true or false"),
    ("bool_parsing", _set("model.unroll", "maybe"), "model.unroll (line ?): got 'maybe'; "
     "expected true or false"),
    ("string_type", _set("name", 5), "name (line ?): got 5; expected a string"),
    ("an empty value", _set("name", None), "name (line ?): got nothing (an empty value); "
     "expected a string"),
    ("literal_error", _set("train.optimizer", None), "train.optimizer (line ?): got nothing "
     "(an empty value); expected one of: adam, sgd, rmsprop, adamw"),
    ("greater_than", _set("train.learning_rate", 0), "train.learning_rate (line ?): got 0; "
     "expected a number > 0"),
    ("greater_than_equal", _set("train.epochs", 0), "train.epochs (line ?): got 0; expected a "
     "whole number >= 1"),
    ("less_than", _set("model.dropout", 1), "model.dropout (line ?): got 1; expected a number "
     "< 1"),
    ("less_than_equal", _set("seed", 2**33), "seed (line ?): got 8589934592; expected a whole "
     "number <= 4294967295"),
    ("missing", _set("data", {"task": "csv_series", "path": "load.csv", "columns": ["load"]}),
     "data.target (line ?): required but missing"),
    ("extra_forbidden", _set("train.early_stopping", {"patience": 2, "pateince": 3}),
     "train.early_stopping.pateince (line ?): unknown key 'pateince'; allowed here: patience, "
     "min_delta. Did you mean 'patience'?"),
    ("union_tag_invalid", _set("data.task", "sequences"), "data.task (line ?): Unknown task "
     "'sequences'. Expected one of:"),
    ("union_tag_not_found", lambda config: config["data"].pop("task"),
     "data.task (line ?): required but missing; expected one of:"),
    ("value_error", _set("data.split.train", 0.5), "data.split (line ?): train + val + test "
     "must sum to 1"),
]


@pytest.mark.parametrize("change,words", [case[1:] for case in ERROR_TYPES],
                         ids=[case[0] for case in ERROR_TYPES])
def test_every_error_type_is_told_in_seqtrain_words_with_field_line_and_value(
        change, words, tmp_path: Path):
    result = invoke("validate", _bad(tmp_path, change))
    assert result.exit_code == 2 and result.stdout == ""
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert re.search(re.escape(words).replace(r"line\ \?", r"line\ \d+"), message), message
    assert not [phrase for phrase in PYDANTIC_WORDING if phrase in message], message
    assert "Traceback" not in message


def test_an_override_that_is_not_a_list_says_how_to_write_one(tmp_path: Path):
    config = write_config(tmp_path, {"name": "x", "data": SERIES})
    result = invoke("validate", config, "--set", "data.columns=load")
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2
    assert ("data.columns (--set data.columns=load): got 'load'; expected a list of strings, "
            "such as [load]") in message, message


def test_a_section_error_names_the_sets_that_wrote_inside_it(tiny_config: Path):
    result = invoke("validate", tiny_config, "--set", "model.units=[32,16]",
                    "--set", "model.num_layers=3", "--set", "data.split.train=0.9")
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2
    assert "model (line 14, --set model.units=[32,16], --set model.num_layers=3): units " \
        "lists 2 layers" in message, message
    assert "data.split (line 10, --set data.split.train=0.9): train + val + test must sum " \
        "to 1" in message, message


def test_a_set_wins_over_the_yaml_line_it_replaced_and_a_top_level_error_names_no_set(
        tiny_config: Path):
    replaced = invoke("validate", tiny_config, "--set", "model={cell: gru, units: 0}")
    assert "model.units (--set model={cell: gru, units: 0}): got 0" in replaced.stderr
    top = invoke("validate", tiny_config, "--set", "device=gpu:0,1", "--set", "train.epochs=3")
    assert top.exit_code == 2 and "names several GPUs" in top.stderr
    assert "--set train.epochs=3" not in top.stderr


def _sections(model, prefix=()):
    """(key path, model) of every config section under `model`, options of unions included."""
    from pydantic import BaseModel

    from seqtrain.config import _arms

    yield prefix, model
    for name, field in model.model_fields.items():
        for arm in _arms(field.annotation):
            if isinstance(arm, type) and issubclass(arm, BaseModel):
                yield from _sections(arm, (*prefix, name))


def test_no_wrong_value_of_any_field_of_any_task_gets_pydantic_wording():
    from seqtrain.config import validate_config
    from seqtrain.data import get_task, task_names

    required = {"csv_series": SERIES,
                "csv_sequences": {**SERIES, "task": "csv_sequences", "id_column": "id"},
                "npz": {"task": "npz", "path": "x.npz"}}
    wrong = [{"x": 1}, [[1]], [], "zzz", "", -5, 2.5, True, None, float("inf")]
    checked = 0
    for task in task_names():
        base = {"name": "x", "data": required.get(task, {"task": task})}
        sections = [*_sections(ExperimentConfig), *_sections(get_task(task).params, ("data",))]
        for prefix, model in sections:
            for name in model.model_fields:
                if prefix == ("data",) and name == "task":
                    continue
                for value in wrong:
                    raw = copy.deepcopy(base)
                    node = raw
                    for part in prefix:
                        node = node.setdefault(part, {})
                    node[name] = value
                    try:
                        validate_config(raw, {}, source="walk.yaml")
                    except ConfigError as err:
                        checked += len(err.problems)
                        for problem in err.problems:
                            assert not [p for p in PYDANTIC_WORDING if p in problem], problem
                            assert ": " in problem and "(not in the file)" in problem, problem
    assert checked > 1000


def test_errors_of_types_no_field_has_yet_are_still_in_seqtrain_words():
    from pydantic import BaseModel, Field, ValidationError

    from seqtrain.config import _describe

    class Future(BaseModel):
        tags: list[str] = Field(max_length=2)
        when: dict[str, int]
        url: str = Field(pattern="^https://")

    with pytest.raises(ValidationError) as caught:
        Future.model_validate({"tags": ["a", "b", "c"], "when": {"a": "x"}, "url": "ftp://x"})
    messages = [_describe(error, {}, {}, {}) for error in caught.value.errors()]
    assert "tags (not in the file): got 3 items; expected at most 2 items" in messages
    assert "url (not in the file): got 'ftp://x'; it should match pattern '^https://'" in messages
    assert any(m.startswith("when[a]") or m.startswith("when.a") for m in messages), messages
    for message in messages:
        assert not [phrase for phrase in PYDANTIC_WORDING if phrase in message], message
        assert "got " in message, message
