"""`signoff`: submit a model, watch it, review it, create the topics."""

from __future__ import annotations

import asyncio
import difflib
import json
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from shared import codec, topics
from shared.kafka import KafkaAccess
from signoff import client, digest_cli, errors, keys_cli, lookups, manifest, review_cli, status_cli, verify
from signoff.acl_cli import acl_app
from signoff.audit_cli import audit_app
from signoff.dlq_cli import dlq_app
from signoff.mlflow_cli import mlflow_app
from signoff.mlflow_cli import submit as submit_from_mlflow
from signoff.settings import ClientSettings
from signoff.timeline import history_line, line, outcome
from signoff.token_cli import token_app
from signoff.topics_cli import topics_app


class _Cli(typer.Typer):
    """The `signoff` entry point: a failure the CLI knows (errors.explain) is one line on stderr and
    its exit code, never a traceback; SIGNOFF_DEBUG=1 shows the traceback as well."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        debug = errors.DebugSettings().debug
        if not debug:
            errors.quiet_clients()
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:  # every failure ends here: one line, or a bug said to be one
            if debug:
                raise
            failure = errors.explain(exc)
            if failure is None:
                typer.echo(f"error: unexpected {type(exc).__name__}: {str(exc)[:500]} (a bug: run again with "
                           "SIGNOFF_DEBUG=1 for the traceback, and report it)", err=True)
                raise SystemExit(errors.INVALID) from None
            typer.echo(f"error: {failure.message}", err=True)
            raise SystemExit(failure.code) from None


app = _Cli(help="Signoff: approve trained models for production, and put them there. Exit codes: "
                "signoff/errors.py (README, Exit codes).",
           no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(topics_app, name="topics")
workflow_app = typer.Typer(help="Approval workflow files.", no_args_is_help=True)
app.add_typer(workflow_app, name="workflow")
app.add_typer(token_app, name="token")
app.add_typer(acl_app, name="acl")
app.add_typer(keys_cli.keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(mlflow_app, name="mlflow")
app.add_typer(dlq_app, name="dlq")
app.command("verify")(verify.command)
app.command("digest")(digest_cli.command)
app.command("status")(status_cli.command)
app.command("review")(review_cli.review)
app.command("pending")(review_cli.pending)

EXIT_CODES = {"deployed": 0, "rolled back": 0, "revoked": 0, "rejected": 3, "deployment failed": 4,
              "superseded": 5, "pending": 2}


def _kafka() -> KafkaAccess:
    """This process' Kafka access (KAFKA_* variables); exit 2 naming the variable when incomplete."""
    try:
        return ClientSettings().kafka
    except (ValueError, ValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def submit(
    model: Annotated[str | None, typer.Option(help="Model name, e.g. fraud-detector")] = None,
    version: Annotated[str | None, typer.Option(help="Model version, e.g. 1.4.0")] = None,
    artifact: Annotated[str | None, typer.Option(help="Artifact path or file:// / https:// URI")] = None,
    sha256: Annotated[str | None, typer.Option(help="Artifact sha256 (computed for a local file when omitted)")] = None,
    metric: Annotated[list[str], typer.Option(help="Metric as name=value; repeat")] = [],  # noqa: B006
    group_metric: Annotated[list[str], typer.Option(help="Per-group metric as group:name=value; repeat")] = [],  # noqa: B006
    data_version: Annotated[str | None, typer.Option(help="Training data version")] = None,
    code_commit: Annotated[str | None, typer.Option(help="Code commit (git sha)")] = None,
    submitter: Annotated[str | None, typer.Option(help="Who submits")] = None,
    training_run_id: Annotated[str | None, typer.Option(help="Training run id")] = None,
    model_card: Annotated[str | None, typer.Option(help="Model card path or URI")] = None,
    evaluation: Annotated[str | None, typer.Option(
        help="Evaluation CSV (label, prediction, group) path or URI: fairness is computed from it")] = None,
    manifest_file: Annotated[Path | None, typer.Option(
        "--manifest", help="YAML/JSON manifest; flags override it")] = None,
    mlflow: Annotated[str | None, typer.Option(
        "--mlflow", help="An MLflow registered model version, models:/NAME/VERSION or models:/NAME@ALIAS: "
        "everything else is read from MLflow (docs/mlflow.md)")] = None,
) -> None:
    """Submit a trained model for approval; prints the submission id."""
    if mlflow is not None:
        typer.echo(str(submit_from_mlflow(mlflow).submission_id))
        return
    try:
        data = manifest.load(manifest_file) if manifest_file else {}
        candidate = dict(data.get("candidate") or {})
        for key, value in (("model", model), ("version", version), ("artifact_uri", artifact),
                           ("artifact_sha256", sha256), ("data_version", data_version),
                           ("code_commit", code_commit)):
            if value is not None:
                candidate[key] = value
        data["candidate"] = candidate
        if metric:
            data["metrics"] = {**(data.get("metrics") or {}), **manifest.parse_pairs(metric, "--metric")}
        for pair in group_metric:
            group, _, rest = pair.partition(":")
            data.setdefault("group_metrics", {}).setdefault(group, {}).update(
                manifest.parse_pairs([rest], "--group-metric"))
        if submitter is not None:
            data["submitter"] = submitter
        if training_run_id is not None:
            data["training_run_id"] = training_run_id
        if model_card is not None:
            data["model_card_uri"] = model_card
        if evaluation is not None:
            data["evaluation_uri"] = evaluation
        submission = manifest.build(data)
    except manifest.ManifestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    signer = keys_cli.pipeline_signer(ClientSettings())  # the local checks first, then the connection
    event = asyncio.run(client.submit(_kafka(), submission, signer=signer))
    typer.echo(str(event.submission_id))


@app.command()
def watch(
    submission_id: uuid.UUID,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the end")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line")] = False,
) -> None:
    """Follow a submission to its end and print its timeline.
    Exit code: 0 deployed, 3 rejected, 4 deployment failed, 5 superseded, 2 still pending at the timeout."""
    async def run() -> str:
        last = "pending"
        settings = ClientSettings()
        async for event in client.follow(_kafka(), submission_id, timeout, keys_cli.trusted(settings),
                                         settings.audit_index):
            typer.echo(json.dumps({"topic": event.topic, **event.model_dump(mode="json")})
                       if as_json else line(event))
            last = outcome(event)
        return last

    result = _run_or_exit(run())
    if not as_json:
        typer.echo(f"=> {result}")
    if result == "pending":
        typer.echo(f"no end within {timeout:g}s: it goes on (a review may be waiting: `signoff pending`); "
                   f"watch again with `signoff watch {submission_id}`", err=True)
    raise typer.Exit(EXIT_CODES.get(result, 2))


def _run_or_exit(follow: Coroutine[Any, Any, str]) -> str:
    """Run a follow; an id that was never published exits 1 at once, saying so."""
    try:
        return asyncio.run(follow)
    except client.NotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _follow_to_end(operation_id: uuid.UUID, timeout: float) -> None:
    """Print an operator's operation until its outcome and exit with its code: a request the
    deployer dead-lettered is refused (4); one with no outcome in time is unconfirmed (7)."""
    async def run() -> str:
        last = "pending"
        async for item in client.follow_operation(_kafka(), operation_id, timeout,
                                                  keys_cli.trusted(ClientSettings())):
            if isinstance(item, client.DeadLettered):
                typer.echo(f"refused by the deployer (dead-lettered on {item.topic}): {item.reason}")
                return "refused"
            typer.echo(line(item))
            last = outcome(item)
        return last

    result = _run_or_exit(run())
    typer.echo(f"=> {result}")
    if result == "pending":
        typer.echo(f"not confirmed within {timeout:g}s: the request was sent and may still take effect; "
                   f"check with `signoff watch {operation_id}`", err=True)
        raise typer.Exit(errors.UNCONFIRMED)
    raise typer.Exit(errors.FAILED if result == "refused" else EXIT_CODES.get(result, errors.PENDING))


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Model name")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the history")],
    to: Annotated[str | None, typer.Option("--to", help="Version to restore (default: the last "
                                              "approved, healthy one before the current)")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the operation to its outcome")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 120.0,
) -> None:
    """Put an earlier version of MODEL back in production, signed with your operator key
    (SIGNOFF_SIGNING_KEY_FILE; the history names its holder); prints the operation id
    (`signoff watch` it). With --wait, exit 0 rolled back, 4 refused or failed, 7 no outcome in time.
    A model that was never deployed is refused before anything is sent (4)."""
    operator = keys_cli.operator(ClientSettings())
    deployed = asyncio.run(client.deployed_models(_kafka()))
    if model not in deployed:
        close = difflib.get_close_matches(model, sorted(deployed), n=3)
        typer.echo(f"error: {model!r} was never deployed, so the deployer would refuse its rollback"
                   + (f"; did you mean {' or '.join(close)}?" if close else "; check the name")
                   + " (`signoff history MODEL`)", err=True)
        raise typer.Exit(errors.FAILED)
    try:
        event = asyncio.run(client.request_rollback(_kafka(), model, to, operator, reason))
    except ValidationError as exc:
        typer.echo(f"error: {codec.describe(exc)}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(event.submission_id))
    if wait:
        _follow_to_end(event.submission_id, timeout)


@app.command()
def revoke(
    submission_id: uuid.UUID,
    reason: Annotated[str, typer.Option(help="Why; recorded in the history")],
    wait: Annotated[bool, typer.Option(help="Follow the submission to the revocation's outcome")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 120.0,
) -> None:
    """Revoke a submission: out of production if it is there, and never deployed again. Signed
    with your operator key (SIGNOFF_SIGNING_KEY_FILE; the history names its holder).
    Prints the submission id (`signoff watch` shows the revocation)."""
    settings = ClientSettings()
    operator = keys_cli.operator(settings)
    servers = _kafka()
    found = _lookup(lookups.find_submission(servers, submission_id, keys_cli.trusted(settings),
                                            settings.audit_index))
    submitted = found.value
    if submitted is None:
        typer.echo(f"error: no submission {submission_id} on {topics.MODEL_SUBMITTED}", err=True)
        raise typer.Exit(1)
    try:
        asyncio.run(client.request_revocation(servers, submitted, operator, reason))
    except ValidationError as exc:
        typer.echo(f"error: {codec.describe(exc)}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(submission_id))
    if wait:
        _follow_to_end(submission_id, timeout)


@app.command()
def history(
    model: Annotated[str, typer.Argument(help="Model name")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line")] = False,
) -> None:
    """Who decided, deployed, rolled back and revoked MODEL's versions, and why."""
    kafka = _kafka()  # first: an incomplete KAFKA_* exits 2 naming the variable
    settings = ClientSettings()
    found = _lookup(lookups.history(kafka, model, keys_cli.trusted(settings), settings.audit_index))
    events = found.value
    for event in events:
        typer.echo(json.dumps({"topic": event.topic, **event.model_dump(mode="json")})
                   if as_json else history_line(event))
    if not events and not as_json:
        typer.echo(f"no history for {model}")
    if found.note:
        typer.echo(found.note, err=True)


def _lookup(query: Coroutine[Any, Any, lookups.Found[Any]]) -> lookups.Found[Any]:
    """Run a lookup (signoff.lookups); an audit index that cannot answer exits 1 saying why."""
    try:
        return asyncio.run(query)
    except lookups.IndexUnusable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@workflow_app.command("validate")
def workflow_validate(
    paths: Annotated[list[Path], typer.Argument(
        help="Workflow files (groups.yaml is read beside each, and skipped when given) or folders (checked whole)")],
    check_targets: Annotated[bool, typer.Option(
        "--targets/--no-targets", help="Check each deploy target's configuration in this environment (DEPLOYER_* "
        "variables, as the deployer reads them); --no-targets where the deployer's environment is not at hand")] = True,
) -> None:
    """Check workflows exactly as the services do at start-up and print each one's policy digest;
    exit 1 on any problem, a workflow without a deploy step or whose deploy target is not configured
    here among them. Services apply workflow changes when they restart."""
    from signoff.workflow_cli import validate as validate_workflows  # CEL loads only for this command

    code = validate_workflows(paths, typer.echo, lambda text: typer.echo(text, err=True), check_targets)
    if code:
        raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
