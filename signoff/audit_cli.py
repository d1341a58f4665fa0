"""`signoff audit`: answers from the audit index (shared.audit), caught up from the topics first.

    signoff audit MODEL [--at T] [--policy] [--json]     every release; or what was in production at T
    signoff audit export --since T [--until T] --format jsonl|csv
    signoff audit policy DIGEST                          the workflow and groups.yaml under a digest
    signoff audit ack P12|G3 --reason WHY                acknowledge a problem or gap (this index)

`audit MODEL` is `audit show MODEL` (the group runs `show` when its first word is not a command of
its own, so a model named "export" or "policy" is audited as `audit show export`). Each command
first reads what is new on the topics into the index (SIGNOFF_AUDIT_INDEX), verifying every
signature against SIGNOFF_TRUSTED_KEYS; `--offline` answers from the index as it is, without a
broker. Gaps, records refused (did not verify or decode, signed by who may not make them, or
conflicting with an indexed event) and missing links are printed on stderr with every answer.
What makes the answer incomplete makes the exit code 6 (unless `--accept-gaps`): every gap and
missing link, a conflict about the model asked about, and a refused record only when it is about
that model (its record key), or any with `--strict` (`export`, about no one model, counts refused
records only with `--strict`). A pipeline's one bad record does not fail every audit for ever;
and what has been looked into is acknowledged (`audit ack`, with who, when and why, in the index
file): still listed, as acknowledged, and no longer in the exit code.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import pwd
import re
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError
from typer._click import Context  # typer 0.27 carries its own click
from typer.core import TyperGroup

from shared.audit import queries
from shared.audit.feed import catch_up
from shared.audit.index import Index, IndexTooOld
from shared.audit.ledger import NoSuchProblem
from shared.events import utcnow
from shared.signing import KeyProblem, load_private, load_trust
from signoff import audit_report, keys_cli
from signoff.settings import ClientSettings

EXIT_GAPS = 6
_MODEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class _DefaultShow(TyperGroup):
    """`audit MODEL ...` runs `audit show MODEL ...`: the first word that is not an option and
    not a command of the group is taken as a model name."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        if first is not None and first not in self.commands:
            args = ["show", *args]
        return super().parse_args(ctx, args)


audit_app = typer.Typer(cls=_DefaultShow, no_args_is_help=True,
                        help="The audit trail: `signoff audit MODEL [--at T]` (= `audit show`), `audit export`, "
                        "`audit policy DIGEST`.")

Offline = Annotated[bool, typer.Option("--offline", help="Answer from the index as it is; no broker")]
AcceptGaps = Annotated[bool, typer.Option("--accept-gaps", help="Exit 0 despite gaps (they are still printed)")]
Strict = Annotated[bool, typer.Option("--strict", help="Every refused record makes the exit code 6, whatever "
                                                     "model it is about")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def parse_time(text: str, option: str) -> datetime:
    """ISO 8601 with a time zone; a naive time is refused (whose clock would it be?)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option} {text!r} is not an ISO 8601 time: write e.g. 2026-11-01T12:00:00Z") from None
    if at.tzinfo is None:
        raise _fail(f"{option} {text!r} has no time zone: add one, e.g. {text}Z for UTC or {text}+02:00")
    return at


def open_index(offline: bool) -> Index:
    """The index, caught up from the topics unless `offline`. Catching up needs the trust file:
    an audit of events whose signatures nobody verified is worthless."""
    try:
        settings = ClientSettings()
    except ValidationError as exc:
        raise _fail(str(exc), 2) from None
    if offline:
        if not settings.audit_index.exists():
            raise _fail(f"no audit index at {settings.audit_index} (SIGNOFF_AUDIT_INDEX): run once without --offline")
        index = _open(settings)
        at = index.caught_up_at()
        typer.echo(f"offline: the index as of {at.isoformat() if at else 'never caught up'}", err=True)
        return index
    if settings.trusted_keys is None:
        raise _fail("signoff audit verifies every event it indexes: set SIGNOFF_TRUSTED_KEYS to the trust file "
                    "(or answer from the index as it is with --offline)", 2)
    keyring = keys_cli.trusted(settings)
    assert keyring is not None
    try:
        kafka = settings.kafka
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    index = _open(settings)
    try:
        asyncio.run(catch_up(kafka, keyring, index))
    except (KafkaConnectionError, TimeoutError, RuntimeError) as exc:  # unreachable, too slow, no topics
        raise _fail(f"{exc}; --offline answers from the index as it is") from None
    except KafkaError as exc:
        raise _fail(f"cannot read the record topics as {kafka.sasl_username}: {type(exc).__name__}: the "
                    "operator or a pipeline may read them all (shared/acl.py); --offline answers from the index "
                    "as it is") from None
    return index


def _open(settings: ClientSettings) -> Index:
    try:
        return Index.open(settings.audit_index)
    except IndexTooOld as exc:
        raise _fail(f"{exc} (SIGNOFF_AUDIT_INDEX)") from None


def _health(index: Index, model: str | None, accept_gaps: bool, strict: bool) -> int:
    """Print what makes the answer incomplete or suspect on stderr; the exit code it calls for."""
    health = index.health(model, strict=strict)
    for line in health.lines():
        typer.echo(audit_report.safe(f"WARNING: {line}"), err=True)
    for line in health.acknowledged_lines():
        typer.echo(audit_report.safe(f"acknowledged: {line}"), err=True)
    if not health.clean and not health.blocking:
        about = f"about {model}" if model else "about one model in particular"
        typer.echo(f"note: the records refused above are not {about}: they do not change the exit code "
                   "(--strict makes them; `signoff audit ack ID --reason ...` once looked into)", err=True)
    return 0 if not health.blocking or accept_gaps else EXIT_GAPS


@audit_app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="Model name")],
    at: Annotated[str | None, typer.Option("--at", help="What was in production at this time (ISO 8601 "
                                                        "with a time zone)")] = None,
    policy: Annotated[bool, typer.Option("--policy", help="Print the policy text under which the release in "
                                                          "production (at --at, or now) was approved")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON")] = False,
    offline: Offline = False,
    accept_gaps: AcceptGaps = False,
    strict: Strict = False,
) -> None:
    """Every release of MODEL, or (--at T) what was in production at T and why.

    Who submitted each release, its checks, who approved or rejected it, why, when, under which
    policy digest, and what became of it (deployed, rolled back, revoked). `signoff audit MODEL`
    is short for this."""
    if not _MODEL.match(model):
        raise _fail(f"model {model!r}: a model name is lowercase letters, digits, '.', '_', '-', starting "
                    "with a letter or digit")
    moment = parse_time(at, "--at") if at is not None else None
    index = open_index(offline)
    if policy:
        answer, digest, texts = queries.policy_in_force(index, model, moment or utcnow())
        if texts is None:
            raise _fail(f"no policy text in the index for {model} at {answer.at.isoformat()}: "
                        + (f"the decision names digest {digest}, whose text it did not carry"
                           if digest else "no approved release was in production"))
        _print(texts.model_dump(mode="json") if as_json else audit_report.policy_lines(texts), as_json)
    elif moment is not None:
        production = queries.production_at(index, model, moment)
        _print(production.model_dump(mode="json") if as_json else audit_report.production_lines(production),
               as_json)
    else:
        audit = queries.releases(index, model)
        if not audit.releases and not audit.operations:
            code = _health(index, model, accept_gaps, strict)
            raise _fail(f"no events of {model} in the index", code or 1)
        _print(audit.model_dump(mode="json") if as_json else audit_report.audit_lines(audit), as_json)
    raise typer.Exit(_health(index, model, accept_gaps, strict))


@audit_app.command("export")
def export(
    since: Annotated[str, typer.Option("--since", help="From this time (ISO 8601 with a time zone)")],
    until: Annotated[str | None, typer.Option("--until", help="Up to this time, excluded")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one JSON object per event) or csv")] = "jsonl",
    offline: Offline = False,
    accept_gaps: AcceptGaps = False,
    strict: Strict = False,
) -> None:
    """The events of a period as JSON lines or CSV, for compliance tools.

    Every indexed event that occurred in [--since, --until), oldest first, on stdout: one row per
    event with who acted, who signed, the policy digest, and the whole event."""
    if fmt not in ("jsonl", "csv"):
        raise _fail(f"--format {fmt!r}: jsonl or csv")
    start = parse_time(since, "--since")
    end = parse_time(until, "--until") if until is not None else None
    index = open_index(offline)
    rows = queries.export_rows(index, start, end)
    if fmt == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row, separators=(",", ":")) + "\n")
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=queries.EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            cells = {**row, "event": json.dumps(row["event"], separators=(",", ":"))}
            writer.writerow({name: audit_report.csv_cell(value) for name, value in cells.items()})
    sys.stdout.flush()
    raise typer.Exit(_health(index, None, accept_gaps, strict))


@audit_app.command("policy")
def policy_text(
    digest: Annotated[str, typer.Argument(help="A policy digest (64 hex digits), as decisions name it")],
    as_json: Annotated[bool, typer.Option("--json", help="The texts as JSON")] = False,
    offline: Offline = False,
) -> None:
    """The workflow file and groups.yaml in force under a policy DIGEST.

    As the decisions made under it carried them (stored once per digest)."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise _fail(f"digest {digest!r}: a policy digest is 64 lowercase hex digits")
    texts = open_index(offline).policy(digest)
    if texts is None:
        raise _fail(f"no policy text for {digest} in the index: no decision made under it carried its text")
    _print(texts.model_dump(mode="json") if as_json else audit_report.policy_lines(texts), as_json)


@audit_app.command("ack")
def ack(
    problem: Annotated[str, typer.Argument(help="The id a warning ends with: P12 (a problem) or G3 (a gap)")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is acknowledged (what was looked into)")],
) -> None:
    """Acknowledge a problem or gap once looked into: still listed, no longer exit code 6.

    Recorded in this index file with who (your OS user, and your key's name when
    SIGNOFF_SIGNING_KEY_FILE and SIGNOFF_TRUSTED_KEYS are set), when and why; no broker needed.
    A note of this index, not a signed event: another index keeps its own."""
    why = reason.strip()
    if not 1 <= len(why) <= 500 or audit_report.safe(why) != why:
        raise _fail("--reason: say why in 1 to 500 characters on one line, without control characters")
    try:
        settings = ClientSettings()
    except ValidationError as exc:
        raise _fail(str(exc), 2) from None
    if not settings.audit_index.exists():
        raise _fail(f"no audit index at {settings.audit_index} (SIGNOFF_AUDIT_INDEX): nothing to acknowledge")
    index = _open(settings)
    try:
        with index.transaction():
            done = index.acknowledge(problem, _who(settings), why, utcnow())
    except NoSuchProblem as exc:
        raise _fail(str(exc)) from None
    finally:
        index.close()
    assert done.ack is not None
    typer.echo(audit_report.safe(f"acknowledged {done.ref} by {done.ack.by}: {done.line()}"))


def _who(settings: ClientSettings) -> str:
    """The OS user, and the name the trust file gives your signing key when both are set."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = f"uid {os.getuid()}"
    if (settings.signing_key_file or settings.signing_key) and settings.trusted_keys:
        try:
            kid = load_private(settings.signing_key_file,
                               settings.signing_key.get_secret_value() if settings.signing_key else None,
                               file_variable="SIGNOFF_SIGNING_KEY_FILE", env_variable="SIGNOFF_SIGNING_KEY").kid
            trusted = load_trust(settings.trusted_keys).keys.get(kid)
        except KeyProblem:
            trusted = None  # who is asked for if available; an unusable key only leaves it out
        if trusted is not None:
            return f"{user} (key {trusted.principal.name})"
    return user


def _print(answer: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
    else:
        for line in answer:
            typer.echo(line)
