"""`signoff topics`: Signoff's topics as the settings lay them out (shared/topic_config.py):
`check` prints how they differ, `create` creates what is missing and sets what differs in place."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from shared.admin import NotAuthorized
from shared.kafka import KafkaAccess
from shared.topic_admin import apply_topics, topic_differences
from shared.topic_config import TopicLayout
from shared.topics import ALL_TOPICS
from signoff.settings import ClientSettings

topics_app = typer.Typer(help="Kafka topics: their retention, replication and partitions (shared/topic_config.py).",
                         no_args_is_help=True)

Partitions = Annotated[int | None, typer.Option(min=1, max=10_000, help="Partitions per topic "
                                                "(default SIGNOFF_TOPIC_PARTITIONS)")]


def _setup(partitions: int | None) -> tuple[KafkaAccess, TopicLayout]:
    """The access and the layout from the environment; exit 2 naming the variable when wrong."""
    try:
        settings = ClientSettings()
        layout = settings.topic_layout
        if partitions is not None:
            layout = layout.model_copy(update={"partitions": partitions})
        return settings.kafka, layout
    except (ValueError, ValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@topics_app.command("check")
def topics_check(partitions: Partitions = None) -> None:
    """Print every way the topics differ from the settings (exit 1 if any). As the admin, or any
    principal that may describe the topics and their configs (the services)."""
    kafka, layout = _setup(partitions)
    try:
        found = asyncio.run(topic_differences(kafka, layout))
    except (NotAuthorized, KafkaError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for difference in found:
        typer.echo(f"{'refused' if difference.refuses else 'differs'}: {difference}")
    if found:
        raise typer.Exit(1)
    typer.echo(f"all {len(ALL_TOPICS)} topics as configured")


@topics_app.command("create")
def topics_create(partitions: Partitions = None) -> None:
    """Create the missing topics (and their dead-letter topics) with their configs, and set in place
    the configs that differ, keeping any other config a topic has. Prints what it changed and what
    it cannot change (replication factor, partition count); exit 1 if a service would still refuse
    to start. As the admin."""
    kafka, layout = _setup(partitions)
    try:
        report = asyncio.run(apply_topics(kafka, layout))
    except (NotAuthorized, KafkaError, TimeoutError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created: {', '.join(report.created)}" if report.created else "all topics exist")
    for difference in report.fixed:
        typer.echo(f"set {difference.topic} {difference.key}={difference.wanted} (was {difference.actual or 'unset'})")
    for difference in report.left:
        typer.echo(f"cannot fix: {difference}", err=True)
    if any(d.refuses for d in report.left):
        raise typer.Exit(1)
