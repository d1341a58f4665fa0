"""The CLI's default audit index is one file per cluster: two clusters used from one checkout
(`make up` on 9092, `make demo` on 9192) never share an index, so one's history never shows in the
other's `signoff history`."""

from __future__ import annotations

from pathlib import Path

import pytest

from signoff.settings import ClientSettings, default_index


def test_each_cluster_has_its_own_default_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_AUDIT_INDEX", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    up = ClientSettings().audit_index
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9192,127.0.0.1:9193")
    demo = ClientSettings().audit_index
    assert up != demo
    assert (up.parent, demo.name) == (Path(".data/signoff"), "audit-127.0.0.1_9192.sqlite")


def test_the_setting_wins_and_odd_characters_stay_out_of_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_AUDIT_INDEX", "/tmp/mine.sqlite")
    assert ClientSettings().audit_index == Path("/tmp/mine.sqlite")
    assert default_index("../../etc/x:1").name == "audit-.._.._etc_x_1.sqlite"
    assert default_index("../../etc/x:1").parent == Path(".data/signoff")
