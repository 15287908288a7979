"""The JSON Schema: valid draft 2020-12, documented everywhere, shipped once inside the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from batchflow.model.schema import load_schema
from tests.support.project import REPO


def test_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads((REPO / "schemas" / "workflow.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _properties(node, path=""):
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{path}/{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _properties(sub, f"{path}/{index}")


def test_every_key_has_a_description() -> None:
    schema = load_schema()
    missing = [path for path, sub in _properties(schema) if not (isinstance(sub, dict) and sub.get("description"))]
    assert not missing, missing
    assert all("description" in definition for definition in schema["$defs"].values())


def test_schema_is_strict_everywhere() -> None:
    objects = []

    def walk(node, path=""):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                objects.append((path, node.get("additionalProperties")))
            for key, sub in node.items():
                walk(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                walk(sub, f"{path}/{index}")

    walk(load_schema())
    assert objects and all(extra is False for _, extra in objects), [p for p, e in objects if e is not False]


def test_schema_durations_are_what_the_parser_reads() -> None:
    from batchflow.durations import SCHEMA_PATTERN

    assert load_schema()["$defs"]["duration"]["pattern"] == SCHEMA_PATTERN


def test_package_schema_is_the_repository_schema() -> None:
    packaged = REPO / "batchflow" / "model" / "workflow.schema.json"
    assert packaged.resolve() == (REPO / "schemas" / "workflow.schema.json").resolve()
    assert load_schema() == json.loads((REPO / "schemas" / "workflow.schema.json").read_text())


def test_shipped_workflows_point_editors_at_the_schema() -> None:
    for path in sorted((REPO / "workflows").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/workflow.schema.json", path


def test_non_editable_install_works_from_any_directory(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    installed = target / "batchflow" / "model" / "workflow.schema.json"
    assert installed.is_file() and not installed.is_symlink()
    assert json.loads(installed.read_text()) == json.loads((REPO / "schemas" / "workflow.schema.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-m", "batchflow", "validate", str(REPO / "workflows" / "topwords.yaml")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "valid workflow 'topwords'" in run.stdout
    check = subprocess.run(
        [sys.executable, "-c", "import batchflow; print(batchflow.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.startswith(str(target))
