"""`signoff submit --mlflow models:/NAME/VERSION` and `signoff mlflow bridge`."""

from __future__ import annotations

import asyncio

import typer
from pydantic import ValidationError

from shared.codec import describe
from shared.events import ModelSubmitted
from shared.logging import configure
from shared.sources import ArtifactError
from signoff import client, keys_cli, mlflow_mapping
from signoff.mlflow_source import MlflowSourceSettings, VersionNotFound, mlflow_client, resolve, tracking_uri
from signoff.settings import ClientSettings

mlflow_app = typer.Typer(help="MLflow Model Registry: the bridge that submits every new version.",
                         no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def submit(reference: str) -> ModelSubmitted:
    """Resolve `reference`, digest its files and publish model.submitted, signed with the
    pipeline's key; the ids are derived from the version, so submitting it again is a duplicate."""
    try:
        rules = MlflowSourceSettings()
        ref = mlflow_mapping.parse_reference(reference)
        mlflow = mlflow_client(rules)
        resolved = asyncio.run(resolve(ref, mlflow, rules))
    except ValidationError as exc:
        raise _fail(f"SIGNOFF_MLFLOW_* settings: {describe(exc)}") from None
    except (VersionNotFound, mlflow_mapping.MappingError, ArtifactError) as exc:
        raise _fail(str(exc)) from None
    settings = ClientSettings()
    signer = keys_cli.pipeline_signer(settings)
    uri, name, version = tracking_uri(rules), resolved.facts.name, resolved.facts.version
    event = ModelSubmitted(event_id=mlflow_mapping.event_id(uri, name, version),
                           submission_id=mlflow_mapping.submission_id(uri, name, version),
                           submission=resolved.submission)
    try:
        kafka = settings.kafka
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    asyncio.run(client.publish(kafka, [event], signer=signer))
    return event


@mlflow_app.command("bridge")
def bridge() -> None:
    """Run the bridge: MLflow's webhook for new model versions (MLFLOW_BRIDGE_PUBLIC_URL,
    MLFLOW_BRIDGE_WEBHOOK_SECRET), or polling (MLFLOW_BRIDGE_MODE=poll); each new version is
    submitted, signed with MLFLOW_BRIDGE_SIGNING_KEY_FILE (a pipeline's key)."""
    import uvicorn

    from services.mlflow_bridge.app import create_app
    from services.mlflow_bridge.settings import MlflowBridgeSettings

    try:
        settings = MlflowBridgeSettings()
    except ValidationError as exc:
        raise _fail(f"MLFLOW_BRIDGE_* settings: {describe(exc)}") from None
    configure(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_level="warning")
