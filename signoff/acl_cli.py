"""`signoff acl`: the broker's ACLs, from the one table in shared/acl.py."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError

from shared import acl
from shared.admin import NotAuthorized, apply_acls
from signoff.settings import ClientSettings

acl_app = typer.Typer(help="Kafka ACLs: who may write and read which topic (shared/acl.py).", no_args_is_help=True)


@acl_app.command("apply")
def acl_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the changes, make none")] = False,
    group_prefix: Annotated[str, typer.Option(
        help="The services' consumer-group prefix (SIGNOFF_CONSUMER_GROUP_PREFIX)")] = "signoff",
    pipeline: Annotated[list[str], typer.Option(
        help="A pipeline principal (one per team); repeat. Default: pipeline")] = [],  # noqa: B006
    operator: Annotated[list[str], typer.Option(
        help="An operator principal; repeat. Default: operator")] = [],  # noqa: B006
) -> None:
    """Make the cluster's ACLs the table's: prints each ACL created (+) and deleted (-), or
    "no changes". Runs as the admin (KAFKA_SASL_USERNAME=admin and its password)."""
    try:
        table = acl.Table(pipelines=tuple(pipeline) or (acl.PIPELINE,),
                          operators=tuple(operator) or (acl.OPERATOR,), group_prefix=group_prefix)
        kafka = ClientSettings().kafka
    except (ValueError, ValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        changes = asyncio.run(apply_acls(kafka, table, dry_run=dry_run))
    except NotAuthorized as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in changes.lines():
        typer.echo(line)
    if dry_run and changes:
        typer.echo(f"(dry run: {len(changes.create)} to create, {len(changes.delete)} to delete)")


@acl_app.command("show")
def acl_show(
    group_prefix: Annotated[str, typer.Option(help="The services' consumer-group prefix")] = "signoff",
    pipeline: Annotated[list[str], typer.Option(help="A pipeline principal; repeat")] = [],  # noqa: B006
    operator: Annotated[list[str], typer.Option(help="An operator principal; repeat")] = [],  # noqa: B006
) -> None:
    """Print the ACLs the table asks for (no broker needed)."""
    table = acl.Table(pipelines=tuple(pipeline) or (acl.PIPELINE,),
                      operators=tuple(operator) or (acl.OPERATOR,), group_prefix=group_prefix)
    for binding in sorted(table.bindings()):
        typer.echo(str(binding))
