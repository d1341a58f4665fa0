"""`signoff review ID approve|reject` and `signoff pending`: a person's side of a review, through
the review-notifier's HTTP API, as the person SIGNOFF_API_TOKEN authenticates.

A vote right after `signoff submit` may come before the review is open (the checks and the policy
run first): `review` waits for it to open, up to --wait-open seconds, rather than failing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated

import typer

from signoff import client, errors
from signoff.settings import ClientSettings

# What a refusal of the review API means for a script: 401 a credential refused (10); any other
# refusal (403 not an approver, 409 already decided, ...) is the rules saying no (1).
REFUSED = {401: errors.BAD_CREDENTIALS}
NOT_OPEN = 404  # the review-notifier's answer for a submission with no review (yet)


def review(
    submission_id: uuid.UUID,
    decision: Annotated[str, typer.Argument(help="approve or reject")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit trail")],
    break_glass: Annotated[bool, typer.Option(
        "--break-glass", help="Approve alone; needs your break-glass credential as SIGNOFF_API_TOKEN")] = False,
    wait_open: Annotated[float, typer.Option(
        "--wait-open", min=0, max=600, help="Seconds to wait for the review to open (checks may still run)")] = 60.0,
) -> None:
    """Approve or reject a submission waiting for review, as the person SIGNOFF_API_TOKEN (your own
    API token or OIDC token) authenticates. Exit 0 recorded, 1 refused, 7 sent but not confirmed
    (`signoff pending` shows whether it counted), 9 review-notifier unreachable, 10 credential refused."""
    if decision not in ("approve", "reject"):
        typer.echo("error: decision must be 'approve' or 'reject'", err=True)
        raise typer.Exit(errors.INVALID)
    token = api_token()
    settings = ClientSettings()
    deadline = time.monotonic() + wait_open
    said = False
    while True:
        try:
            result = client.review(settings.review_url, token, submission_id, decision, reason, break_glass,
                                   settings.review_timeout)
            break
        except client.ReviewRefused as exc:
            if exc.status != NOT_OPEN or time.monotonic() >= deadline:
                typer.echo(f"refused: {exc}", err=True)
                raise typer.Exit(REFUSED.get(exc.status, errors.INVALID)) from None
            if not said:
                typer.echo(f"no review open for {submission_id} yet (its checks may still run): waiting up to "
                           f"{wait_open:g}s", err=True)
                said = True
            time.sleep(1.0)  # polling the API for the review to open, bounded by the deadline above
    typer.echo(f"{decision} recorded as {result.get('approver', '?')}"
               + (" (break-glass)" if break_glass else "") + f"; review is {result['outcome']}")


def pending(as_json: Annotated[bool, typer.Option("--json", help="One JSON review per line")] = False) -> None:
    """The reviews waiting for your vote (as SIGNOFF_API_TOKEN authenticates you): id, model,
    version, age, deadline and the votes so far; the nearest deadline first."""
    from signoff.pending_view import row  # only this command formats reviews

    token = api_token()
    settings = ClientSettings()
    try:
        reviews = client.pending(settings.review_url, token, settings.review_timeout)
    except client.ReviewRefused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(REFUSED.get(exc.status, errors.INVALID)) from None
    for one in reviews:
        typer.echo(json.dumps(one) if as_json else row(one))
    if not reviews and not as_json:
        typer.echo("no reviews waiting for you")


def api_token() -> str:
    settings = ClientSettings()
    if settings.api_token is None:
        typer.echo("error: set SIGNOFF_API_TOKEN to your own credential (signoff token create YOU, or an "
                   "OIDC token)", err=True)
        raise typer.Exit(errors.INVALID)  # nothing was refused: a setting is missing
    return settings.api_token.get_secret_value()
