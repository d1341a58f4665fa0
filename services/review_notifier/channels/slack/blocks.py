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
    metric_lines = "\n".join(f"`{escape(n)}` {cand} (vs {prod})" for n, cand, prod in evidence.metrics(review))
    check_lines = "\n".join(f"{':white_check_mark:' if ok else ':x:'} {escape(text)}"
                            for ok, text in evidence.checks(review))
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": evidence.title(review)[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{escape(v)}"[:2000]}
                                       for k, v in evidence.facts(review)[:10]]},
        *([{"type": "section", "text": {"type": "mrkdwn", "text": f":warning: {escape(changed)}"[:3000]}}]
          if (changed := evidence.production_changed(review)) else []),
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*Metrics* (against {escape(evidence.production_label(review))})\n{metric_lines or '-'}")[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Checks*\n{check_lines or '-'}"[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(evidence.status(review))[:3000]}]},
    ]
    if review.decision is None:
        blocks.append({"type": "input", "block_id": REASON_BLOCK, "optional": True,
                       "label": {"type": "plain_text", "text": "Reason (optional)"},
                       "element": {"type": "plain_text_input", "action_id": REASON_INPUT, "multiline": True}})
        buttons = [_button("Approve", APPROVE, sid, "primary"), _button("Reject", REJECT, sid, "danger")]
        blocks.append({"type": "actions", "block_id": f"signoff_vote:{sid}", "elements": buttons})
        if review.request.break_glass:  # not a button: it needs the break-glass role's own credential
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
                f"Break-glass ({escape(', '.join(review.request.break_glass))}): with your break-glass "
                f"credential, `signoff review {sid} approve --break-glass --reason ...`")[:3000]}]})
    # `text` is mrkdwn too (the notification and the fallback): escaped like the blocks
    return {"text": escape(f"{evidence.title(review)}: {evidence.status(review)}")[:3000], "blocks": blocks}


def reminder(review: Review, slack_names: list[str]) -> dict:
    c = review.request.submission.candidate
    who = ", ".join(slack_names) or "approvers"  # mentions (<@U…>) built by the channel, not submitted text
    return {"text": f"Reminder for {who}: {escape(c.model)} {escape(c.version)} still needs review "
                    f"(deadline {review.deadline.isoformat()})"}


def _button(label: str, action_id: str, value: str, style: str | None) -> dict:
    button = {"type": "button", "action_id": action_id, "value": value,
              "text": {"type": "plain_text", "text": label}}
    if style:
        button["style"] = style
    return button


def escape(text: str) -> str:
    """Slack's three control characters, so submitted text cannot forge mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
