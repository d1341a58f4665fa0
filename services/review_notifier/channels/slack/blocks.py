"""The Slack message of a review, as Block Kit: pure, rebuilt from the review on every change.

Pending: the evidence (with a warning once production changed since the request), a reason box
and Approve / Reject (and Break glass when the workflow has a break-glass role) buttons. Decided:
the same evidence with who decided, and no buttons.
"""

from __future__ import annotations

from services.review_notifier import evidence
from services.review_notifier.reviews import Review

APPROVE, REJECT, BREAK_GLASS = "signoff_approve", "signoff_reject", "signoff_break_glass"
ACTIONS = {APPROVE: "approve", REJECT: "reject", BREAK_GLASS: "approve"}
REASON_BLOCK, REASON_INPUT = "signoff_reason", "reason"


def message(review: Review) -> dict:
    """`text` (the notification fallback) and `blocks`, for chat.postMessage, chat.update or a webhook."""
    sid = str(review.submission_id)
    metric_lines = "\n".join(f"`{n}` {cand} (vs {prod})" for n, cand, prod in evidence.metrics(review))
    check_lines = "\n".join(f"{':white_check_mark:' if ok else ':x:'} {_esc(text)}"
                            for ok, text in evidence.checks(review))
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": evidence.title(review)[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_esc(v)}"[:2000]}
                                       for k, v in evidence.facts(review)[:10]]},
        *([{"type": "section", "text": {"type": "mrkdwn", "text": f":warning: {_esc(changed)}"[:3000]}}]
          if (changed := evidence.production_changed(review)) else []),
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*Metrics* (against {evidence.production_label(review)})\n{metric_lines or '-'}")[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Checks*\n{check_lines or '-'}"[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _esc(evidence.status(review))[:3000]}]},
    ]
    if review.decision is None:
        blocks.append({"type": "input", "block_id": REASON_BLOCK, "optional": True,
                       "label": {"type": "plain_text", "text": "Reason (required to break glass)"},
                       "element": {"type": "plain_text_input", "action_id": REASON_INPUT, "multiline": True}})
        buttons = [_button("Approve", APPROVE, sid, "primary"), _button("Reject", REJECT, sid, "danger")]
        if review.request.break_glass:
            buttons.append(_button("Break glass: approve alone", BREAK_GLASS, sid, None))
        blocks.append({"type": "actions", "block_id": f"signoff_vote:{sid}", "elements": buttons})
    return {"text": f"{evidence.title(review)}: {evidence.status(review)}"[:3000], "blocks": blocks}


def reminder(review: Review, slack_names: list[str]) -> dict:
    c = review.request.submission.candidate
    who = ", ".join(slack_names) or "approvers"
    return {"text": f"Reminder for {who}: {c.model} {c.version} still needs review "
                    f"(deadline {review.deadline.isoformat()})"}


def _button(label: str, action_id: str, value: str, style: str | None) -> dict:
    button = {"type": "button", "action_id": action_id, "value": value,
              "text": {"type": "plain_text", "text": label}}
    if style:
        button["style"] = style
    return button


def _esc(text: str) -> str:
    """Slack's three control characters, so submitted text cannot forge mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
