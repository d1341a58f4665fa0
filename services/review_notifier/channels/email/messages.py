"""Review emails and the pages their links open: pure builders of text, HTML and EmailMessage.

Links only ever lead to a confirmation page (GET changes nothing: mail scanners open links); the
page's form POSTs the decision.
"""

from __future__ import annotations

from email.message import EmailMessage
from html import escape
from urllib.parse import quote

from services.review_notifier import evidence
from services.review_notifier.reviews import Review

CONFIRM_PATH, DECIDE_PATH = "/email/confirm", "/email/decide"


def link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{CONFIRM_PATH}?token={quote(token)}"


def review_mail(review: Review, sender: str, to: str, approver: str, approve_url: str, reject_url: str,
                reminder: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, to
    msg["Subject"] = ("Reminder: " if reminder else "") + evidence.title(review)
    msg["X-Signoff-Submission"] = str(review.submission_id)
    facts = "\n".join(f"{k}: {v}" for k, v in evidence.facts(review))
    metrics = "\n".join(f"  {n}: {c} (production: {p})" for n, c, p in evidence.metrics(review))
    checks = "\n".join(f"  [{'pass' if ok else 'FAIL'}] {t}" for ok, t in evidence.checks(review))
    changed = evidence.production_changed(review)
    note = f"{changed}\n\n" if changed else ""
    msg.set_content(
        f"Hello {approver},\n\n{evidence.title(review)}\n\n{facts}\n\n{note}"
        f"Metrics (against {evidence.production_label(review)}):\n{metrics or '  -'}\n\n"
        f"Checks:\n{checks or '  -'}\n\n{evidence.status(review)}\n\n"
        f"Approve: {approve_url}\nReject:  {reject_url}\n\n"
        "Each link opens a confirmation page; nothing is decided until you confirm there.\n")
    rows = "".join(f"<tr><th align=left>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in evidence.facts(review))
    crows = "".join(f"<li>{'&#10004;' if ok else '&#10008;'} {escape(t)}</li>" for ok, t in evidence.checks(review))
    msg.add_alternative(
        f"<html><body><h2>{escape(evidence.title(review))}</h2><p>Hello {escape(approver)},</p>"
        f"<table>{rows}</table>{_metrics_html(review)}"
        f"<h3>Checks</h3><ul>{crows}</ul><p>{escape(evidence.status(review))}</p>"
        f'<p><a href="{escape(approve_url)}">Approve</a> &nbsp; <a href="{escape(reject_url)}">Reject</a></p>'
        "<p>Each link opens a confirmation page; nothing is decided until you confirm there.</p>"
        "</body></html>", subtype="html")
    return msg


def confirm_page(review: Review, approver: str, action: str, token: str) -> str:
    """The page a link opens: the evidence as it is now (production included) and a form that
    POSTs the decision."""
    facts = "".join(f"<tr><th align=left>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in evidence.facts(review))
    verb = "Approve" if action == "approve" else "Reject"
    return _page(f"{verb} {evidence.title(review).removeprefix('Review requested: ')}?", (
        f"<p>You are <b>{escape(approver)}</b>. Nothing has been decided yet.</p><table>{facts}</table>"
        f"{_metrics_html(review)}"
        f'<form method="post" action="{DECIDE_PATH}">'
        f'<input type="hidden" name="token" value="{escape(token)}">'
        '<p><label>Reason<br><textarea name="reason" rows="3" cols="60"></textarea></label></p>'
        f'<p><button type="submit">{verb}</button></p></form>'))


def _metrics_html(review: Review) -> str:
    """The metrics against the production the review shows, after the warning when it changed."""
    changed = evidence.production_changed(review)
    mrows = "".join(f"<tr><td>{escape(n)}</td><td>{escape(c)}</td><td>{escape(p)}</td></tr>"
                    for n, c, p in evidence.metrics(review))
    return ((f"<p><b>{escape(changed)}</b></p>" if changed else "")
            + f"<h3>Metrics</h3><table><tr><th>metric</th><th>candidate</th>"
            f"<th>{escape(evidence.production_label(review))}</th></tr>{mrows}</table>")


def result_page(title: str, message: str) -> str:
    return _page(title, f"<p>{escape(message)}</p>")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><meta name=robots content=noindex>"
            f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>")
