"""How `signoff pending` prints one review waiting for a vote: one line a person can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def row(review: dict, now: datetime | None = None) -> str:
    """`<id>  <model> <version>  asked <age> ago  due in <left>  votes: bob approve (quorum 2)`."""
    now = now or datetime.now(UTC)
    asked = datetime.fromisoformat(review["requested_at"])
    due = datetime.fromisoformat(review["deadline"])
    votes = ", ".join(f"{v['approver']} {v['decision']}" for v in review["votes"]) or "none"
    left = f"due in {span(due - now)}" if due > now else f"overdue by {span(now - due)}"
    return (f"{review['submission_id']}  {review['model']} {review['version']}  asked {span(now - asked)} ago  "
            f"{left}  votes: {votes} (quorum {review['quorum']})")


def span(delta: timedelta) -> str:
    """A duration as a person reads it: 45s, 12m, 3h05m, 2d04h."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{secs}s"
