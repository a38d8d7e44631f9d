"""The JSON Schema of experiment files, for editors (`seqtrain schema`); pydantic only.

With the YAML extension of VS Code, or any editor that runs yaml-language-server, a
config whose first line is `# yaml-language-server: $schema=PATH` is checked and
completed as you type. `configs/seqtrain.schema.json` is this schema, kept current by a test.

The text is the same under every supported pydantic (2.6 and later): `canonical` folds the
spellings that differ between versions into one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqtrain.errors import SeqtrainError, StorageError

SCHEMA_FILE_NAME = "seqtrain.schema.json"
MODELINE = f"# yaml-language-server: $schema={SCHEMA_FILE_NAME}"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an experiment file: every section, `data:` one branch per task."""
    from seqtrain.config import ExperimentConfig

    schema = canonical(ExperimentConfig.model_json_schema())
    schema.pop("title", None)
    _require_the_tag(schema)
    return {"$schema": DIALECT, "title": "seqtrain experiment", **schema}


def schema_text() -> str:
    """`json_schema()` as the text `seqtrain schema` prints: sorted keys, two-space indent."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def _require_the_tag(schema: dict[str, Any]) -> None:
    """Mark `task:` required in every `data:` branch, as validation has it.

    Each branch gives its tag a default (its own name), so pydantic leaves it out of
    `required`; an editor would then find a `data:` without `task:` fitting several
    branches at once, and say so instead of asking for the task.
    """
    discriminator = schema["properties"]["data"]["discriminator"]
    tag = discriminator["propertyName"]
    for ref in discriminator["mapping"].values():
        branch = schema["$defs"][ref.rsplit("/", 1)[-1]]
        branch["required"] = [tag, *(name for name in branch.get("required", []) if name != tag)]


def canonical(node: Any) -> Any:
    """One spelling of what pydantic versions spell differently.

    - `{"allOf": [{"$ref": X}], ...}` (pydantic < 2.9, a `$ref` with a description beside
      it) becomes `{"$ref": X, ...}`, which JSON Schema 2020-12 allows.
    - `type` beside `const` is dropped (added by later versions): `const` says it all.
    """
    if isinstance(node, list):
        return [canonical(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _canonical_map(value) if key in _NAMED else canonical(value)
            for key, value in node.items()}
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and set(all_of[0]) == {"$ref"}:
        del node["allOf"]
        node["$ref"] = all_of[0]["$ref"]
    if "const" in node:
        node.pop("type", None)
    return node


# Keywords whose value maps names (fields, definitions) to schemas: the names are not
# keywords, so a field called `type` beside one called `const` stays.
_NAMED = ("properties", "$defs", "patternProperties")


def _canonical_map(node: Any) -> Any:
    if not isinstance(node, dict):
        return canonical(node)
    return {name: canonical(value) for name, value in node.items()}


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node` with its `$ref` looked up in `schema["$defs"]`; its own keys win."""
    if "$ref" in node:
        return {**schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], **{
            key: value for key, value in node.items() if key != "$ref"}}
    return node


def alternatives(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas a value at `node` may match (its `anyOf`/`oneOf` branches), resolved."""
    node = resolve(schema, node)
    branches = node.get("anyOf") or node.get("oneOf")
    if not branches:
        return [node]
    return [resolve(schema, branch) for branch in branches]


def section(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema of the section at dotted `path` (`train.early_stopping`; "" the top).

    Of a section that may also be null, the section. Use it on a `canonical` schema.
    """
    node = schema
    for part in (path.split(".") if path else []):
        node = next(alt for alt in alternatives(schema, node["properties"][part])
                    if "properties" in alt)
    return node


def write_schema(path: Path) -> None:
    """Write `schema_text()` to `path` atomically.

    Raises:
        SeqtrainError: `path` is a folder, its folder does not exist, or it cannot be
            written there (exit 2: the path is the user's to fix).
    """
    from seqtrain import atomic

    if path.is_dir():
        raise SeqtrainError(f"-o {path}: is a folder; expected a file name, e.g. "
                            f"{path / SCHEMA_FILE_NAME}")
    if not path.parent.is_dir():
        problem = "is not a folder" if path.parent.exists() else "does not exist"
        raise SeqtrainError(f"-o {path}: {path.parent} {problem}; expected a file in an "
                            "existing folder")
    try:
        atomic.write_text(path, schema_text())
    except StorageError as err:
        raise SeqtrainError(f"-o: {err}; choose a folder you can write to") from None
