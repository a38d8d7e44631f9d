"""`seqtrain schema`: the JSON Schema editors use to check and complete experiment files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from seqtrain.data import task_names
from seqtrain.schema import MODELINE
from tests.conftest import CONFIGS, invoke

SCHEMA_FILE = CONFIGS / "seqtrain.schema.json"


def _nodes(node):
    """Every mapping in a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def test_the_schema_file_in_the_repository_is_current():
    result = invoke("schema")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(), (
        "configs/seqtrain.schema.json is out of date: run "
        "`seqtrain schema -o configs/seqtrain.schema.json`")


def test_every_shipped_config_points_its_editor_at_the_schema_and_fits_it():
    schema = json.loads(SCHEMA_FILE.read_text())
    defs = schema["$defs"]
    tasks = schema["properties"]["data"]["discriminator"]["mapping"]
    assert sorted(tasks) == sorted(task_names())  # every task, its own parameters
    configs = sorted(CONFIGS.glob("*.yaml"))
    assert configs
    for path in configs:
        assert path.read_text().splitlines()[0] == MODELINE, path.name
        config = yaml.safe_load(path.read_text())
        assert set(config) <= set(schema["properties"]), path.name
        task = defs[tasks[config["data"]["task"]].rsplit("/", 1)[-1]]
        assert set(config["data"]) <= set(task["properties"]), path.name
        for section, model in (("model", "ModelConfig"), ("train", "TrainConfig"),
                               ("runtime", "RuntimeConfig")):
            assert set(config.get(section, {})) <= set(defs[model]["properties"]), path.name


def test_the_schema_speaks_json_schema_that_editors_understand():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$schema"].startswith("https://json-schema.org/")
    for node in _nodes(schema):
        # pydantic's own constraint names, which no editor knows (pydantic >= 2.9 wrote them)
        assert not {"ge", "gt", "le", "lt"} & node.keys(), node
        if node.get("type") == "object":
            assert node["additionalProperties"] is False  # unknown keys are errors
    for ref in schema["properties"]["data"]["discriminator"]["mapping"].values():
        branch = schema["$defs"][ref.rsplit("/", 1)[-1]]
        assert branch["required"][0] == "task"  # an editor asks for the task first
        assert branch["properties"]["task"]["description"]
    train = schema["$defs"]["TrainConfig"]["properties"]
    # Bounds survive inside `X | None` (pydantic 2.6 lost weight_decay's).
    assert {"minimum": 0.0, "type": "number"} in train["weight_decay"]["anyOf"]
    assert {"exclusiveMinimum": 0.0, "type": "number"} in train["clipnorm"]["anyOf"]
    model = schema["$defs"]["ModelConfig"]["properties"]
    assert (model["dropout"]["minimum"], model["dropout"]["exclusiveMaximum"]) == (0.0, 1.0)


def test_a_float_out_of_range_is_a_number_not_a_whole_number(tiny_config: Path):
    result = invoke("validate", tiny_config, "--set", "train.weight_decay=-1",
                    "--set", "model.dropout=1", "--set", "train.epochs=0",
                    "--set", "train.learning_rate=yes")
    assert result.exit_code == 2
    assert "train.weight_decay (--set train.weight_decay=-1): got -1; expected a number >= 0" \
        in result.stderr
    assert "model.dropout (--set model.dropout=1): got 1; expected a number < 1" in result.stderr
    assert "train.epochs (--set train.epochs=0): got 0; expected a whole number >= 1" \
        in result.stderr
    assert "train.learning_rate (--set train.learning_rate=yes): got true (a YAML boolean); " \
        "expected a number" in result.stderr


def test_schema_writes_a_file_and_refuses_paths_it_cannot_write(tmp_path: Path):
    target = tmp_path / "seqtrain.schema.json"
    result = invoke("schema", "-o", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(target)
    assert target.read_text() == SCHEMA_FILE.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporaries
    for bad, said in ((tmp_path, "is a folder"),
                      (tmp_path / "no" / "such.json", "does not exist"),
                      (target / "x.json", "is not a folder"),
                      (Path("/proc/seqtrain.schema.json"), "choose a folder you can write to")):
        refused = invoke("schema", "-o", bad)
        assert refused.exit_code == 2, (bad, refused.stderr)
        assert said in refused.stderr and str(bad) in refused.stderr
        assert "Traceback" not in refused.stderr and refused.stdout == ""
    assert not (tmp_path / "no").exists() and target.is_file()


def test_schema_never_imports_tensorflow(tmp_path: Path):
    import subprocess
    import sys
    import textwrap

    from tests.conftest import ROOT

    script = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from seqtrain.cli import app
        for args in (["schema"], ["schema", "-o", {str(tmp_path / "s.json")!r}],
                     ["schema", "--help"]):
            assert CliRunner().invoke(app, args).exit_code == 0, args
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
