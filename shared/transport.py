"""Where services send secrets and votes over HTTP (Slack's API and webhooks, deployment webhooks):
https:// only. A development setting may allow http:// to a loopback address (a stand-in on this
machine), never to anything else. Pure: no I/O, no name resolution (`localhost` is taken at its word).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


class InsecureUrl(ValueError):
    """A URL a secret or a vote must not be sent to; the message says why and what to set."""


def why_insecure(url: str, allow_http_loopback: bool = False) -> str | None:
    """Why `url` may not be called, or None when it may."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "it is not a valid URL"
    scheme = parts.scheme.lower()
    if not host or scheme not in ("https", "http"):
        return "it is not an https:// URL with a host"
    if scheme == "https":
        return None
    if not allow_http_loopback:
        return "it is http://, which sends secrets and votes in clear; only https:// is allowed"
    if not is_loopback(host):
        return "http:// is allowed (for development) only to a loopback address: 127.0.0.1, ::1 or localhost"
    return None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown(url: str) -> str:
    """Scheme and host only: a webhook URL's path or query is often its secret."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" if parts.hostname else "(not a URL)"
    except ValueError:
        return "(not a URL)"


def require_secure(url: str, what: str, allow_http_loopback: bool, setting: str) -> str:
    """`url` when it may be called, else InsecureUrl naming `what`, why, and the development
    setting (`setting`, the environment variable) that allows http:// on loopback."""
    why = why_insecure(url, allow_http_loopback)
    if why is not None:
        raise InsecureUrl(f"{what} {shown(url)} is refused: {why}; use an https:// URL (in development, "
                          f"{setting}=true allows http:// to 127.0.0.1)")
    return url
