"""`signoff status MODEL [--at T]`: what is in production now (or at T) and the decision that put
it there, on one screen. The same answer as `signoff audit MODEL --at T` (shared.audit's index,
caught up from the topics and verified first), with "now" as the default time."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from shared.audit import queries
from shared.events import utcnow
from signoff import audit_cli, audit_report


def command(
    model: Annotated[str, typer.Argument(help="Model name")],
    at: Annotated[str | None, typer.Option("--at", help="At this time instead of now (ISO 8601 with a time "
                                                        "zone, e.g. 2026-11-01T12:00:00Z)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON")] = False,
    offline: audit_cli.Offline = False,
) -> None:
    """What is in production for MODEL now (or at --at T), and the deployment, approval and
    submission that put it there. Exit 1 when nothing is, 6 when the audit index has gaps
    (`signoff audit MODEL` for every release)."""
    if not audit_cli._MODEL.match(model):
        raise audit_cli._fail(f"model {model!r}: a model name is lowercase letters, digits, '.', '_', '-', "
                              "starting with a letter or digit")
    moment = audit_cli.parse_time(at, "--at") if at is not None else utcnow()
    index = audit_cli.open_index(offline)
    answer = queries.production_at(index, model, moment)
    if as_json:
        typer.echo(json.dumps(answer.model_dump(mode="json"), indent=2))
    else:
        for line in audit_report.production_lines(answer):
            typer.echo(line)
        typer.echo(f"(every release: signoff audit {model})")
    code = audit_cli._health(index, model, accept_gaps=False, strict=False)
    raise typer.Exit(code or (0 if answer.state != "nothing" else 1))
