"""Verifying MLflow webhook deliveries, with MLflow's own signing code as the reference; the
bridge's memory of deliveries (replays) and of its poll cursor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from services.mlflow_bridge import webhook
from services.mlflow_bridge.state import BridgeState

SECRET = "s" * 40
NOW = 1_800_000_000.0
BODY = json.dumps({"entity": "model_version", "action": "created", "timestamp": "2027-01-15T08:00:00+00:00",
                   "data": {"name": "Churn Model", "version": "3", "source": "models:/m-1", "run_id": "r",
                            "tags": {}, "description": None}})


def signed(body: str = BODY, *, secret: str = SECRET, delivery: str = "6f1c8d0e-4a4b-4f0e-9a57-2b1e0c2f7a10",
           at: float = NOW) -> dict[str, str]:
    """Headers exactly as MLflow's delivery code makes them."""
    timestamp = str(int(at))
    return {webhook.DELIVERY_ID: delivery, webhook.TIMESTAMP: timestamp,
            webhook.SIGNATURE: _generate_hmac_signature(secret, delivery, timestamp, body)}


def test_our_signature_is_mlflows() -> None:
    assert webhook.signature(SECRET, "d1", "123", BODY.encode()) == _generate_hmac_signature(SECRET, "d1", "123", BODY)


def test_a_delivery_signed_by_mlflow_is_accepted_and_read() -> None:
    got = webhook.verify(SECRET, signed(), BODY.encode(), NOW + 5, max_age=300)
    assert (got.event, got.name, got.version) == ("model_version.created", "Churn Model", "3")


def test_another_event_is_accepted_but_names_no_version() -> None:
    body = json.dumps({"entity": "registered_model", "action": "created", "data": {"name": "x"}})
    got = webhook.verify(SECRET, signed(body), body.encode(), NOW, max_age=300)
    assert (got.event, got.name) == ("registered_model.created", None)


@pytest.mark.parametrize("tamper", [
    lambda h, b: (h, b.replace(b'"3"', b'"4"')),                                     # body changed
    lambda h, b: ({**h, webhook.DELIVERY_ID: "other-id"}, b),                          # id swapped
    lambda h, b: ({**h, webhook.TIMESTAMP: str(int(NOW) + 1)}, b),                     # time moved
    lambda h, b: ({**h, webhook.SIGNATURE: signed(secret="w" * 40)[webhook.SIGNATURE]}, b),  # wrong secret
    lambda h, b: ({k: v for k, v in h.items() if k != webhook.SIGNATURE}, b),           # unsigned
    lambda h, b: ({**h, webhook.SIGNATURE: "v1,!!notbase64"}, b),
])
def test_a_tampered_or_unsigned_delivery_is_refused_401(tamper) -> None:  # noqa: ANN001
    headers, body = tamper(signed(), BODY.encode())
    with pytest.raises(webhook.Refused, match="not signed with the webhook secret") as refused:
        webhook.verify(SECRET, headers, body, NOW, max_age=300)
    assert refused.value.status == 401


def test_one_good_signature_among_several_is_enough() -> None:
    headers = signed()
    headers[webhook.SIGNATURE] = f"v1,{'A' * 44} {headers[webhook.SIGNATURE]}"
    assert webhook.verify(SECRET, headers, BODY.encode(), NOW, max_age=300).version == "3"


@pytest.mark.parametrize("skew", [301, -301])
def test_a_stale_or_future_delivery_is_refused_even_when_signed(skew: int) -> None:
    with pytest.raises(webhook.Refused, match="stale") as refused:
        webhook.verify(SECRET, signed(), BODY.encode(), NOW + skew, max_age=300)
    assert refused.value.status == 401


@pytest.mark.parametrize("headers", [{}, {webhook.DELIVERY_ID: "a b", webhook.TIMESTAMP: "1"},
                                     {webhook.DELIVERY_ID: "d", webhook.TIMESTAMP: "soon"}])
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(webhook.Refused, match="not an MLflow delivery") as refused:
        webhook.verify(SECRET, headers, BODY.encode(), NOW, max_age=300)
    assert refused.value.status == 401


@pytest.mark.parametrize("data", [{"version": "3"}, {"name": "x", "version": "three"}, {"name": "", "version": "1"}])
def test_a_signed_version_event_without_a_name_and_version_number_is_refused_400(data: dict) -> None:
    body = json.dumps({"entity": "model_version", "action": "created", "data": data})
    with pytest.raises(webhook.Refused, match="data.name") as refused:
        webhook.verify(SECRET, signed(body), body.encode(), NOW, max_age=300)
    assert refused.value.status == 400


def test_an_oversized_body_is_refused_before_anything_else() -> None:
    body = "x" * (webhook.MAX_BODY + 1)
    with pytest.raises(webhook.Refused) as refused:
        webhook.verify(SECRET, signed(body), body.encode(), NOW, max_age=300)
    assert refused.value.status == 413


def test_a_delivery_id_is_claimed_once_and_forgotten_after_the_window(tmp_path: Path) -> None:
    state = BridgeState(tmp_path / "bridge.db")
    assert state.claim("d1", keep_seconds=600, now=NOW)
    assert not state.claim("d1", keep_seconds=600, now=NOW + 599)
    reopened = BridgeState(tmp_path / "bridge.db")  # durable: a restart still refuses the replay
    assert not reopened.claim("d1", keep_seconds=600, now=NOW + 10)
    assert reopened.claim("d1", keep_seconds=600, now=NOW + 601)


def test_the_cursor_starts_once_and_only_moves_forward(tmp_path: Path) -> None:
    state = BridgeState(tmp_path / "bridge.db")
    assert state.cursor(1000) == 1000
    assert state.cursor(5000) == 1000  # the first start is kept
    state.advance(3000)
    state.advance(2000)
    assert BridgeState(tmp_path / "bridge.db").cursor(9999) == 3000


def test_a_handled_version_is_remembered_with_its_outcome(tmp_path: Path) -> None:
    state = BridgeState(tmp_path / "bridge.db")
    assert state.handled("churn", "3") is None
    state.record("churn", "3", "refused: no such version")
    assert BridgeState(tmp_path / "bridge.db").handled("churn", "3") == "refused: no such version"


@pytest.mark.parametrize(("delivery", "at"), [("6f1c8d0e\n", str(int(NOW))), ("6f1c8d0e", f"{int(NOW)}\n")])
def test_headers_are_matched_whole_even_when_signed(delivery: str, at: str) -> None:
    headers = {webhook.DELIVERY_ID: delivery, webhook.TIMESTAMP: at,
               webhook.SIGNATURE: _generate_hmac_signature(SECRET, delivery, at, BODY)}
    with pytest.raises(webhook.Refused, match="not an MLflow delivery"):
        webhook.verify(SECRET, headers, BODY.encode(), NOW, max_age=300)


def test_a_version_number_is_read_as_mlflow_numbers_it() -> None:
    body = BODY.replace('"version": "3"', '"version": "0003"')
    assert webhook.verify(SECRET, signed(body), body.encode(), NOW, max_age=300).version == "3"
