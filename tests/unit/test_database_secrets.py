"""The database password never reaches an error message or a log: not from a settings error, not
from libpq's complaint about a URL it could not parse."""

from __future__ import annotations

import psycopg
import pytest
from pydantic import ValidationError

from services.deployer.settings import DeployerSettings
from shared.database import open_database, redacted

PASSWORD = "S3CRETPW"


def test_a_refused_database_url_is_named_without_its_password(monkeypatch):
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", f"postgresql+psycopg://signoff:{PASSWORD}@db/signoff")
    with pytest.raises(ValidationError) as info:
        DeployerSettings()
    assert "SIGNOFF_DATABASE_URL" in str(info.value) and PASSWORD not in str(info.value)


@pytest.mark.parametrize("password", ["se%zzcret", "pa%3Ass", "plain"])
def test_a_url_libpq_cannot_use_fails_without_its_password(password):
    url = f"postgresql://signoff:{password}@127.0.0.1:1/signoff"  # port 1: nothing listens
    with pytest.raises(psycopg.OperationalError) as info:
        open_database(url, "SELECT 1;")
    assert password not in str(info.value) and "pa:ss" not in str(info.value)
    assert "SIGNOFF_DATABASE_URL" in str(info.value)


def test_redacted_removes_the_password_as_written_and_as_decoded():
    url = "postgresql://u:p%40ss@h/d"
    assert redacted("bad token p%40ss and p@ss", url) == "bad token *** and ***"
    assert redacted("nothing secret", "postgresql://u@h/d") == "nothing secret"
