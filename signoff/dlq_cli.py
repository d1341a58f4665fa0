"""`signoff dlq`: the dead letters (shared/dlq.py), as an operator (KAFKA_SASL_USERNAME=operator).

    signoff dlq list [--topic T] [--limit N] [--since T] [--json]   the newest letters, newest first
    signoff dlq show TOPIC PARTITION OFFSET [--json]                one letter, its value, its signature
    signoff dlq replay TOPIC PARTITION OFFSET [--force]             re-drive it to its original topic

TOPIC is a consumed topic or its `.dlq`. A re-drive sends the original record unchanged (its
consumer verifies the original signature again) and records who re-drove it: the operator whose
key SIGNOFF_SIGNING_KEY_FILE is (as the trust file names it), else the Kafka principal.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer

from shared import dlq
from shared.admin import NotAuthorized
from signoff import errors, keys_cli
from signoff.settings import ClientSettings

dlq_app = typer.Typer(help="Dead letters: list them with their reasons, show one, re-drive one (operators).",
                      no_args_is_help=True)

Topic = Annotated[str, typer.Argument(help="A consumed topic (model.submitted) or its dead-letter topic (.dlq)")]
Partition = Annotated[int, typer.Argument(min=0, help="The letter's partition (`signoff dlq list` shows it)")]
Offset = Annotated[int, typer.Argument(min=0, help="The letter's offset")]


def _fail(message: str, code: int = errors.INVALID) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> ClientSettings:
    try:
        settings = ClientSettings()
        settings.kafka  # noqa: B018 - fails now, naming the variable, when the access is incomplete
        return settings
    except ValueError as exc:  # pydantic's ValidationError is one
        raise _fail(str(exc)) from None


def summary(letter: dlq.Letter) -> str:
    """One line per letter: where, when, what, why."""
    notes = [f"clipped from {letter.original_size} bytes"] if letter.clipped else []
    if letter.attempts > 1:
        notes.append(f"{letter.attempts} attempts")
    if letter.redriven_from:
        notes.append(f"a re-drive of {letter.redriven_from}, header says by {letter.redriven_by!r}")
    extra = f" [{'; '.join(notes)}]" if notes else ""
    return (f"{letter.coordinates}  {letter.dead_lettered_at.isoformat(timespec='seconds')}  "
            f"key={letter.key}  {letter.event_type or '(no ce_type)'}  {letter.reason[:300]}{extra}")


@dlq_app.command("list")
def list_command(
    topic: Annotated[str | None, typer.Option(help="Only this topic's letters (a consumed topic or its .dlq)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=dlq.MAX_LIMIT, help="How many, the newest")] = 100,
    since: Annotated[datetime | None, typer.Option(help="Only letters from this time (ISO 8601)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON letter per line")] = False,
) -> None:
    """The newest dead letters with their reasons, newest first."""
    settings = _settings()
    try:
        letters = asyncio.run(dlq.list_letters(settings.kafka, topic, limit=limit, since=since))
    except dlq.NotALetter as exc:
        raise _fail(str(exc)) from None
    for letter in letters:
        typer.echo(letter.model_dump_json() if as_json else summary(letter))
    if not letters and not as_json:
        typer.echo("no dead letters", err=True)


@dlq_app.command("show")
def show_command(topic: Topic, partition: Partition, offset: Offset,
                 as_json: Annotated[bool, typer.Option("--json", help="The letter as JSON")] = False) -> None:
    """One letter: its reason, the original record's coordinates and headers, its value, and
    (with SIGNOFF_TRUSTED_KEYS) whether its signature verifies now."""
    settings = _settings()
    keyring = keys_cli.trusted(settings)
    try:
        letter = asyncio.run(dlq.show(settings.kafka, topic, partition, offset, keyring))
    except dlq.NotALetter as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(letter.model_dump_json())
        return
    original = f"{letter.topic}/{letter.original_partition}/{letter.original_offset}"
    typer.echo(f"letter:      {letter.coordinates}\noriginal:    {original}\nkey:         {letter.key}\n"
               f"dead at:     {letter.dead_lettered_at.isoformat(timespec='seconds')}\n"
               f"reason:      {letter.reason}\nattempts:    {letter.attempts}\n"
               f"size:        {letter.size} bytes" + (f" (clipped from {letter.original_size})" if letter.clipped
                                                       else ""))
    if letter.signature is not None:
        typer.echo(f"signature:   {letter.signature}")
    if letter.redriven_from:
        typer.echo(f"re-drive of: {letter.redriven_from} (header, not signed, says by {letter.redriven_by!r})")
    for name, value in sorted(letter.headers.items()):
        typer.echo(f"header:      {name}={value[:200]}")
    typer.echo(letter.value_text or "")
    if letter.value_text_clipped:
        typer.echo(f"... (the first {len(letter.value_text or '')} characters)")


def _who(settings: ClientSettings) -> str:
    """Who re-drives: the operator whose signing key this is, else the Kafka principal."""
    if settings.signing_key_file is not None or settings.signing_key is not None:
        return keys_cli.operator(settings).principal.name
    return f"kafka:{settings.kafka.sasl_username or 'anonymous'}"


@dlq_app.command("replay")
def replay_command(topic: Topic, partition: Partition, offset: Offset,
                   force: Annotated[bool, typer.Option(help="Re-drive a letter re-driven before")] = False) -> None:
    """Re-drive a letter: its original record, unchanged (its consumer verifies the original
    signature again), to its original topic. Refused for a clipped letter, and for one re-driven
    before unless --force. Fix the cause first (a key not yet trusted, a workflow, a bug)."""
    settings = _settings()
    by = _who(settings)
    try:
        result = asyncio.run(dlq.replay(settings.kafka, dlq.coordinates(topic, partition, offset), by=by,
                                        force=force))
    except (dlq.NotALetter, dlq.ReplayRefused) as exc:
        raise _fail(str(exc)) from None
    except NotAuthorized as exc:
        raise _fail(str(exc), errors.NOT_AUTHORIZED) from None
    typer.echo(f"re-driven {result.letter} to {result.topic}/{result.partition}/{result.offset} "
               f"(event {result.event_id}, key {result.key}) by {result.by}"
               + (" (forced: it was re-driven before)" if result.forced else ""))
    typer.echo(f"follow it: signoff history {result.key}; if it is refused again, it is back in "
               f"`signoff dlq list --topic {result.topic}`")
