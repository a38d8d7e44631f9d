"""The CPU speed layer: one switch, one guarded module of private APIs, and a clean layering."""

from __future__ import annotations

import ast
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqtrain.tuning import internals
from tests.conftest import ROOT, TINY, run_cli, write_config

PACKAGE = ROOT / "seqtrain"
CONFIG = {**TINY, "train": {"epochs": 1, "batch_size": 32}}


def rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [{k: float(v) for k, v in row.items() if k != "epoch_seconds"}
                for row in csv.DictReader(file)]


def settings(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())["speed_settings"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same experiment: speed layer on, off, and off because Keras is out of range."""
    folder = tmp_path_factory.mktemp("tuning")
    config = write_config(folder, CONFIG)
    found = {}
    for name, args in (("auto", []), ("off", ["--set", "runtime.cpu_tuning=off"])):
        result = run_cli("run", config, "--run-dir", folder / name, "--quiet", *args)
        assert result.returncode == 0, result.stderr
        found[name] = folder / name
    # A fresh process that sees a Keras newer than the tested range.
    script = ("import sys; from importlib import metadata; real = metadata.version; "
              "metadata.version = lambda name: '3.99.0' if name == 'keras' else real(name); "
              "from seqtrain.cli import main; sys.argv[0] = 'seqtrain'; main()")
    newer = subprocess.run([sys.executable, "-c", script, "run", str(config), "--run-dir",
                            str(folder / "newer"), "--quiet"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert newer.returncode == 0, newer.stderr
    found["newer"], found["newer_stderr"] = folder / "newer", newer.stderr
    return found


@pytest.mark.slow  # three runs (a module fixture)
def test_off_is_plain_keras_with_tensorflows_threads_and_the_same_metrics(runs):
    on, off = settings(runs["auto"]), settings(runs["off"])
    assert (on["cpu_tuning"], on["recurrent_loop"], on["warm_validation"]) == (
        "auto", "seqtrain", True)
    assert on["threads"]["intra_op"] == 1  # a tiny product: one thread per operation
    assert off == {**off, "cpu_tuning": "off", "streams": 1, "recurrent_loop": "keras",
                   "intra_op_threads": None, "warm_validation": False}
    assert off["threads"]["intra_op"] == 0  # TensorFlow's own choice
    from seqtrain.plan import gist

    plan = json.loads((runs["off"] / "plan.json").read_text())
    assert gist(plan).endswith("plain Keras (cpu_tuning: off)")
    for tuned, plain in zip(rows(runs["auto"]), rows(runs["off"]), strict=True):
        assert tuned.keys() == plain.keys()
        for key in tuned:  # the same sums in another order: float32 rounding apart
            np.testing.assert_allclose(tuned[key], plain[key], rtol=1e-4, err_msg=key)


@pytest.mark.slow  # the same three runs
def test_outside_the_tested_versions_it_warns_once_and_runs_plain_keras(runs):
    warnings = [line for line in runs["newer_stderr"].splitlines() if "warning" in line]
    assert warnings == ["seqtrain: warning: Keras 3.99.0 is outside the versions seqtrain's "
                        "CPU speed layer is tested with (3.11 to 3.15); training runs plain "
                        "Keras (runtime.cpu_tuning: off)"]
    assert settings(runs["newer"])["cpu_tuning"] == "off"
    assert rows(runs["newer"]) == rows(runs["off"])  # not a silent change: what off gives


def test_the_version_check_takes_the_tested_minor_versions_only():
    assert internals.check("3.11.0", "2.16.1") == ""
    assert internals.check("3.15.1", "2.21.0rc1") == ""
    assert "Keras 3.10.0 is outside" in internals.check("3.10.0", "2.21.0")
    assert "Keras 3.16.0 is outside" in internals.check("3.16.0", "2.21.0")
    assert "TensorFlow 2.22.0 is outside" in internals.check("3.15.0", "2.22.0")
    assert "outside" in internals.check("nightly", "2.21.0")


def test_streams_need_the_speed_layer(tmp_path: Path):
    from tests.conftest import invoke

    config = write_config(tmp_path, {**TINY, "runtime": {"cpu_tuning": "off", "streams": 2}})
    result = invoke("validate", config)
    assert result.exit_code == 2
    assert "runtime (line " in result.stderr
    assert "streams: 2 needs the speed layer that cpu_tuning: off turns off" in result.stderr


# --- where private APIs live, and how the modules depend on each other ---------------------

PRIVATE = ("keras.src", "tensorflow.python", "_flatten_layers", "inner_loop =",
           "._dropout_mask", "._recurrent_dropout_mask", "getclosurevars", "global_state",
           "model.call =")


def sources() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def test_private_keras_and_tensorflow_apis_are_used_in_one_module_only():
    users = {name: [word for word in PRIVATE if word in path.read_text()]
             for name, path in sources().items()}
    assert [name for name, words in users.items() if words] == ["seqtrain.tuning.internals"]
    assert "keras.src" in users["seqtrain.tuning.internals"]


def imports() -> dict[str, set[str]]:
    """Each package module's imports of other package modules, in functions too.

    `if TYPE_CHECKING:` blocks are left out: they are never run.
    """
    modules = sources()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        pending = [ast.parse(path.read_text())]
        while pending:
            for node in ast.iter_child_nodes(pending.pop()):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                pending.append(node)
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                        base = ".".join(parts + ([base] if base else []))
                    found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                              else base for alias in node.names}
        graph[name] = {m for m in found if m in modules and m not in (name, "seqtrain")}
    return graph


def test_no_module_of_the_package_imports_itself_back():
    graph = imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            assert state.get(other) != "open", " -> ".join([*path, module, other])
            if other not in state:
                visit(other, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_layers_read_top_down():
    graph = imports()

    def reaches(module: str) -> set[str]:
        seen, pending = set(), [module]
        while pending:
            for other in graph[pending.pop()]:
                if other not in seen:
                    seen.add(other)
                    pending.append(other)
        return seen

    speed = {m for m in graph if m.startswith("seqtrain.tuning")}
    assert not reaches("seqtrain.runtime") & speed  # runtime configures TensorFlow, alone
    assert not reaches("seqtrain.models") & speed
    assert {"seqtrain.runtime", "seqtrain.models"} <= reaches("seqtrain.tuning")
    # `plan` is a command: only the commands and workflows above it use it
    assert {m for m in graph if "seqtrain.plan" in graph[m]} <= {
        "seqtrain.cli", "seqtrain.experiment", "seqtrain.sweep"}
    assert "GATES" in (PACKAGE / "models.py").read_text()  # the gate table, with the models


def test_a_run_from_before_cpu_tuning_is_read_as_the_tuning_it_used():
    from seqtrain.tuning import Tuning

    before = {"streams": 2, "recurrent_loop": "seqtrain", "warm_validation": True,
              "threads": {"intra_op": 1, "inter_op": 0}, "batch_size": 128}
    assert Tuning.from_settings(before) == Tuning("auto", 2, "seqtrain", 1, True)
    wide = {**before, "streams": 1, "threads": {"intra_op": 0, "inter_op": 0}}
    assert Tuning.from_settings(wide).intra_op_threads is None  # TensorFlow's threads
    assert Tuning.from_settings({"batch_size": 128}) is None  # nothing recorded: resolve


def test_a_mixed_float16_model_is_refused_training_on_a_cpu_but_evaluated_there():
    from seqtrain import tuning
    from seqtrain.config import validate_config
    from seqtrain.errors import DeviceError

    config = validate_config({**TINY, "precision": "mixed_float16"}, {})
    with pytest.raises(DeviceError, match="mixed_float16 needs a GPU"):
        tuning.select(config, tuning.OFF, device="cpu")
    devices, _ = tuning.select(config, tuning.OFF, device="cpu", training=False)  # eval
    assert not devices.is_gpu
