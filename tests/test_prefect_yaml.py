"""prefect.yaml, read as `prefect deploy` reads it: one deployment per flow, in step with the
Prefect this project requires, and nothing in it that Prefect should not store (patient data,
secrets, data paths). `tests/test_deploy.py` deploys it for real."""

from __future__ import annotations

import importlib
import pkgutil
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from packaging.version import Version
from prefect import Flow

import openslots.flows

REPO = Path(__file__).resolve().parents[1]


def _prefect_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return loaded


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_prefect_version_is_pyprojects_lower_bound_and_installed() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (requirement,) = [d for d in pyproject["project"]["dependencies"] if re.match(r"prefect\b", d)]
    lower_bound = requirement.split(">=", 1)[1].split(",")[0].strip()
    assert str(_prefect_yaml()["prefect-version"]) == lower_bound
    assert Version(version("prefect")) >= Version(lower_bound)


def test_every_flow_has_a_deployment() -> None:
    flows = set()
    for module_info in pkgutil.iter_modules(openslots.flows.__path__):
        module = importlib.import_module(f"openslots.flows.{module_info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Flow) and value.__module__ == module.__name__:
                flows.add(f"openslots/flows/{module_info.name}.py:{name}")
    entrypoints = {d["entrypoint"] for d in _prefect_yaml()["deployments"]}
    assert flows - entrypoints == set()
    assert entrypoints - flows == set()  # every entrypoint names a flow that exists


def test_schedules_name_their_time_zone_and_scheduled_runs_never_overlap() -> None:
    for deployment in _prefect_yaml()["deployments"]:
        for schedule in deployment.get("schedules") or []:
            assert schedule.get("timezone"), deployment["name"]  # cron without one is UTC
        if deployment.get("schedules"):
            limit = deployment.get("concurrency_limit")
            assert (limit if isinstance(limit, int) else limit["limit"]) == 1, deployment["name"]


def test_nothing_in_it_is_a_data_path_a_secret_or_patient_data() -> None:
    config = _prefect_yaml()
    for deployment in config["deployments"]:
        # Paths and names come with each run or from the worker's settings; a default
        # path here is a dead path on a new install.
        assert not {"path", "paths", "directory"} & set(deployment.get("parameters") or {}), (
            deployment["name"]
        )
    values = " ".join(_strings(config))
    # A secret templated into a deployment would be resolved by `prefect deploy` and stored
    # in the deployment record: flows read them (environment, then Secret block) instead.
    assert "prefect.blocks.secret" not in values
    for name in ("DATABASE_URL", "SMTP_PASSWORD", "TWILIO_AUTH_TOKEN", "SECRET_KEY"):
        assert f"OPENSLOTS_{name}" not in values
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", values)  # no email address
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", values)  # no date (of birth)


def test_deploy_needs_openslots_deploy_dir_and_pulls_from_it() -> None:
    config = _prefect_yaml()
    (pull,) = config["pull"]
    assert pull == {
        "prefect.deployments.steps.set_working_directory": {
            "directory": "{{ $OPENSLOTS_DEPLOY_DIR }}"
        }
    }
    (check,) = config["build"]
    assert "OPENSLOTS_DEPLOY_DIR" in check["prefect.deployments.steps.run_shell_script"]["script"]
