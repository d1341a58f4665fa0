"""`signoff token`: per-person API tokens for the review API (teams without an identity provider).

    signoff token create USER [--role approver|break-glass|operator] [--ttl 90d]   prints the token once
    signoff token list [--json]
    signoff token revoke ID

Tokens are written to SIGNOFF_TOKENS_FILE (the review-notifier reads the same file), which keeps
only each secret's hash. USER must be a known user: named by a workflow in SIGNOFF_WORKFLOWS (or
its groups.yaml), or listed in SIGNOFF_KNOWN_USERS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.review_notifier.api_tokens import TokenError, TokenFile, TokenRecord, issue
from shared.events import utcnow
from shared.identity import Directory, IdentityError
from shared.workflow.schema import parse_duration

token_app = typer.Typer(help="Per-person API tokens for the review API.", no_args_is_help=True)


class TokenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNOFF_", extra="ignore", frozen=True)

    tokens_file: Path = Field(default=Path(".data/signoff/tokens.json"), description="The token file")
    workflows: Path = Field(default=Path("workflows"), description="Workflow folder naming the known users")
    known_users: tuple[str, ...] = Field(default=(), description="Known users besides the workflows' (JSON list)")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@token_app.command("create")
def create(
    user: Annotated[str, typer.Argument(help="The person the token authenticates (a known user)")],
    role: Annotated[str, typer.Option(help="approver (vote, read), break-glass (break glass, read) or operator "
                                           "(re-drive dead letters in the console, read)")] = "approver",
    ttl: Annotated[str, typer.Option(help="Lifetime, such as 90d or 12h (at most 366d)")] = "90d",
) -> None:
    """Issue a token for USER and print it once: hand it to them; only its hash is kept."""
    settings = TokenSettings()
    try:
        person = Directory.from_workflows(settings.workflows, settings.known_users).resolve(user)
        lifetime = parse_duration(ttl, "--ttl")
        token, record = issue(person, role, lifetime, utcnow())
        TokenFile(settings.tokens_file).add(record)
    except (IdentityError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except TokenError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"token {record.id} for {record.user} ({record.role}), expires {record.expires.isoformat()}; "
               "shown once, keep it secret (SIGNOFF_API_TOKEN):", err=True)
    typer.echo(token)


@token_app.command("list")
def list_tokens(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False) -> None:
    """The tokens issued: id, user, role, status and dates (never a secret, nor its hash)."""
    try:
        records = TokenFile(TokenSettings().tokens_file).records()
    except TokenError as exc:
        raise _fail(exc.message) from None
    for record in sorted(records, key=lambda r: r.created):
        row = {"id": record.id, "user": record.user, "role": record.role, "status": _status(record),
               "created": record.created.isoformat(), "expires": record.expires.isoformat()}
        typer.echo(json.dumps(row) if as_json else "  ".join(str(v) for v in row.values()))
    if not records and not as_json:
        typer.echo("no tokens")


@token_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token's id (signoff token list)")]) -> None:
    """Revoke a token: the review API refuses it from the next request on."""
    try:
        record = TokenFile(TokenSettings().tokens_file).revoke(token_id.strip(), utcnow())
    except TokenError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"revoked {record.id} ({record.user}, {record.role})")


def _status(record: TokenRecord) -> str:
    if record.revoked is not None:
        return "revoked"
    return "expired" if utcnow() >= record.expires else "active"

