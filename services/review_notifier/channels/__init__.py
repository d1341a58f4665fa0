"""Notification channels: how approvers are asked for their vote, and how it comes back.

Each channel is one module (or small package) here whose `CHANNEL` implements `Channel`
(channels/base.py), and one line in `CHANNELS`. The Notifier asks every channel that is configured to send; the HTTP
API mounts every channel's routes; the settings take every channel's fields. The decision API
(`POST /reviews/{id}/decision`, bearer token, channel "http") is the core API's, not a channel.
"""

import importlib

from services.review_notifier.channels.base import Channel, Notices, Receipt


def _registry(*modules: str) -> tuple[type[Channel], ...]:
    return tuple(importlib.import_module(f"{__name__}.{m}").CHANNEL for m in modules)


CHANNELS = _registry(
    "slack",
    "email",
)

__all__ = ["CHANNELS", "Channel", "Notices", "Receipt"]
