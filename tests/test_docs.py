"""The README stays true: every config field documented, CI runs its test command verbatim."""

from __future__ import annotations

import re

from pydantic import BaseModel

from seqtrain.config import ExperimentConfig
from seqtrain.data import task_params_models
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += field_paths(annotation, f"{prefix}{name}.")
        elif name != "data":
            paths.append(prefix + name)
    return paths


def test_every_config_field_has_a_row_in_the_readme():
    missing = [p for p in field_paths(ExperimentConfig) if f"| `{p}` |" not in README]
    assert not missing, f"README's field table lacks: {missing}"


def test_every_task_parameter_has_a_row_in_its_task_section():
    common = {"task", "num_samples", "split"}
    for task in task_params_models():
        name = task.model_fields["task"].default
        section = README.split(f"### `task: {name}`", 1)[1].split("\n#", 1)[0]
        missing = [f for f in task.model_fields if f not in common and f"| `{f}` |" not in section]
        assert not missing, f"README's section on task {name} lacks: {missing}"


def test_every_config_field_has_a_description():
    def undocumented(model, prefix=""):
        for name, field in model.model_fields.items():
            if not field.description:
                yield prefix + name
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from undocumented(field.annotation, f"{prefix}{name}.")
    models = [ExperimentConfig, *task_params_models()]
    assert [path for model in models for path in undocumented(model)] == []


def test_ci_runs_the_readme_test_command_verbatim():
    commands = re.findall(r"```bash\n(.+?)\n```", README)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_exit_codes_are_documented():
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in README
