"""Verifying an MLflow webhook delivery (pure): who sent it, when, and what it says.

MLflow signs each delivery as Standard Webhooks do (mlflow/webhooks/delivery.py): the header
X-MLflow-Signature is "v1,<base64 HMAC-SHA256 of '<delivery id>.<timestamp>.<body>'>" with the
webhook's secret, beside X-MLflow-Delivery-Id and X-MLflow-Timestamp (Unix seconds). A delivery
is accepted when the signature matches (compared in constant time), the timestamp is within
`max_age` of now (a captured delivery cannot be sent again later), and its id was not seen before
(the caller's store: a replay within the window is refused too). Only then is the body parsed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

SIGNATURE = "x-mlflow-signature"
TIMESTAMP = "x-mlflow-timestamp"
DELIVERY_ID = "x-mlflow-delivery-id"
MAX_BODY = 256 * 1024  # MLflow's payloads are a few hundred bytes
# Matched whole (fullmatch): with re.match, "$" also matches before a trailing newline.
_DELIVERY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NAME_MAX = 256
_VERSION = re.compile(r"[0-9]{1,10}")


class Refused(Exception):
    """The delivery is not accepted: `status` (401 not MLflow's or stale, 400 malformed, 409
    replayed) and why (never the secret, nor the signature received)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: its id, and the model version it announces (None: another event)."""

    delivery_id: str
    event: str  # "<entity>.<action>", e.g. model_version.created
    name: str | None = None
    version: str | None = None


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The v1 signature of a delivery, as MLflow computes it."""
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: float, max_age: float) -> Delivery:
    """The delivery if it is MLflow's, fresh and well formed; Refused otherwise. `headers` with
    lowercase names. The replay check (the delivery id seen before) is the caller's."""
    if len(body) > MAX_BODY:
        raise Refused(413, f"body of {len(body)} bytes, at most {MAX_BODY}")
    delivery_id, timestamp = headers.get(DELIVERY_ID, ""), headers.get(TIMESTAMP, "")
    if not _DELIVERY.fullmatch(delivery_id) or not _TIMESTAMP.fullmatch(timestamp):
        raise Refused(401, f"missing or malformed {DELIVERY_ID} / {TIMESTAMP} headers: not an MLflow delivery")
    expected = signature(secret, delivery_id, timestamp, body).encode()
    # Standard Webhooks allows several space-separated signatures (a secret being rotated).
    offered = headers.get(SIGNATURE, "").split()
    if not any(hmac.compare_digest(expected, _canonical(s)) for s in offered[:8]):
        raise Refused(401, f"bad or missing {SIGNATURE}: not signed with the webhook secret "
                      "(check MLFLOW_BRIDGE_WEBHOOK_SECRET and the webhook registered in MLflow)")
    age = now - int(timestamp)
    if abs(age) > max_age:
        raise Refused(401, f"signed {int(age)} s {'ago' if age > 0 else 'ahead'}, more than {int(max_age)} s: "
                      "stale (a replay) or a clock out of step")
    return _parse(delivery_id, body)


def _canonical(offered: str) -> bytes:
    """The offered signature re-encoded, so that only a v1 signature of the right length compares."""
    version, _, value = offered.partition(",")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""
    return f"{version},{base64.b64encode(raw).decode()}".encode()


def _parse(delivery_id: str, body: bytes) -> Delivery:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Refused(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise Refused(400, "body is not a JSON object")
    event = f"{payload.get('entity')}.{payload.get('action')}"[:80]
    if event != "model_version.created":
        return Delivery(delivery_id, event)
    data = payload.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    version = str(data.get("version")) if isinstance(data, dict) else ""
    if not isinstance(name, str) or not 0 < len(name) <= _NAME_MAX or not _VERSION.fullmatch(version):
        raise Refused(400, f"data.name (1-{_NAME_MAX} characters) and data.version (a version number) "
                      "are required in a model_version.created delivery")
    return Delivery(delivery_id, event, name, str(int(version)))  # "0003" is MLflow's version 3
