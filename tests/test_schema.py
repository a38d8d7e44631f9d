"""`seqtrain schema`: the JSON Schema editors use to check and complete experiment files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from seqtrain.data import task_names
from tests.conftest import CONFIGS, invoke

SCHEMA_FILE = CONFIGS / "seqtrain.schema.json"
MODELINE = "# yaml-language-server: $schema=seqtrain.schema.json"


def test_the_schema_file_in_the_repository_is_current():
    result = invoke("schema")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(), (
        "configs/seqtrain.schema.json is out of date: run "
        "`seqtrain schema -o configs/seqtrain.schema.json`")


def test_every_shipped_config_points_its_editor_at_the_schema_and_fits_it():
    schema = json.loads(SCHEMA_FILE.read_text())
    defs = schema["$defs"]

    def fields(name: str) -> set[str]:
        return set(defs[name]["properties"])

    tasks = schema["properties"]["data"]["discriminator"]["mapping"]
    assert sorted(tasks) == sorted(task_names())  # every task, its own parameters
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert path.read_text().splitlines()[0] == MODELINE, path.name
        config = yaml.safe_load(path.read_text())
        assert set(config) <= set(schema["properties"]), path.name
        task = defs[tasks[config["data"]["task"]].rsplit("/", 1)[-1]]
        assert set(config["data"]) <= set(task["properties"]), path.name
        for section, model in (("model", "ModelConfig"), ("train", "TrainConfig"),
                               ("runtime", "RuntimeConfig")):
            assert set(config.get(section, {})) <= fields(model), (path.name, section)


def test_schema_writes_a_file_and_refuses_a_folder(tmp_path: Path):
    result = invoke("schema", "-o", tmp_path / "seqtrain.schema.json")
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads((tmp_path / "seqtrain.schema.json").read_text())["title"] == \
        "seqtrain experiment"
    refused = invoke("schema", "-o", tmp_path)
    assert refused.exit_code == 2 and "expected a file in an existing folder" in refused.stderr
    missing = invoke("schema", "-o", tmp_path / "no" / "such.json")
    assert missing.exit_code == 2 and not (tmp_path / "no").exists()
