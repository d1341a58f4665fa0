"""Notification channels: how approvers are asked for their vote, and how it comes back.

Each channel is one module (or small package) here that implements `Channel` (channels/base.py),
and one line in `CHANNELS`. The Notifier asks every channel that is configured to send; the HTTP
API mounts every channel's routes; the settings take every channel's fields. The decision API
(`POST /reviews/{id}/decision`, bearer token, channel "http") is the core API's, not a channel.
"""

from services.review_notifier.channels.base import Channel, Notices, Receipt
from services.review_notifier.channels.email import EmailChannel
from services.review_notifier.channels.slack import SlackChannel

CHANNELS: tuple[type[Channel], ...] = (
    SlackChannel,
    EmailChannel,
)

__all__ = ["CHANNELS", "Channel", "Notices", "Receipt"]
