"""SIGNOFF_DATABASE_URL_FILE: the database URL from a file (a Docker secret), so a password in it
stays out of the environment, `docker inspect` and process listings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import ServiceSettings

URL = "postgresql://signoff:0123abcd@postgres:5432/signoff"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGNOFF_DATABASE_URL", "SIGNOFF_DATABASE_URL_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_the_url_is_read_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(URL + "\n")
    monkeypatch.setenv("SIGNOFF_DATABASE_URL_FILE", str(secret))
    settings = ServiceSettings()
    assert settings.database_url is not None and settings.database_url.get_secret_value() == URL
    assert "0123abcd" not in repr(settings)


def test_no_file_leaves_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().database_url is None


@pytest.mark.parametrize(("content", "why"), [
    ("", "is empty"),
    ("mysql://root:hunter2@db/x\n", "must be a postgresql://"),
])
def test_a_bad_file_is_refused_naming_the_variable_never_the_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, why: str
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(content)
    monkeypatch.setenv("SIGNOFF_DATABASE_URL_FILE", str(secret))
    with pytest.raises(ValidationError) as raised:
        ServiceSettings()
    assert why in str(raised.value) and "hunter2" not in str(raised.value)


def test_a_missing_file_is_refused_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_DATABASE_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match="SIGNOFF_DATABASE_URL_FILE: cannot read"):
        ServiceSettings()


def test_the_url_and_the_file_together_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(URL)
    monkeypatch.setenv("SIGNOFF_DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", URL)
    with pytest.raises(ValidationError, match="not both"):
        ServiceSettings()
