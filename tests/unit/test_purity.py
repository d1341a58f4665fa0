"""The decisions stay pure: the modules that decide import no I/O library and no settings, not
even through what they import. Each is imported alone in a fresh interpreter, and what it pulled
in is read from sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DECIDERS = (
    "services.policy.rules",
    "services.deployer.lifecycle",
    "services.deployer.rollout",
    "services.review_notifier.reviews",
    "services.validator.checks",
    "shared.production",
    "shared.rejections",
    "shared.workflow.schema",
    "shared.workflow.matching",
    "shared.sources.policy",
    "shared.topic_config",
)
FORBIDDEN = ("yaml", "celpy", "httpx", "aiokafka", "faststream", "sqlite3", "pydantic_settings",
             "fastapi", "uvicorn", "shared.settings")


def imported_by(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", DECIDERS)
def test_a_decision_module_imports_no_io_and_no_settings(module: str) -> None:
    loaded = imported_by(module)
    found = sorted(name for name in loaded for bad in FORBIDDEN
                   if name == bad or name.startswith(bad + ".") or name.endswith(".settings") and
                   name.startswith(("services.", "shared.")))
    assert found == [], f"{module} imports {found}"


def test_the_check_sees_an_io_import() -> None:
    """The control: a module that does import I/O is caught."""
    assert "yaml" in imported_by("shared.workflow.loading")
