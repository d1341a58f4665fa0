"""The I/O of one submission's checks: fetch the artifact and the documents it points to, scan
them, and hand the figures to the pure checks in `checks`, `security` and `fairness`.

Nothing here loads or unpickles an artifact; hashing and scanning run in worker threads, so the
event loop keeps serving other partitions while a large artifact is read.

Who submitted is what the signature proved (`submitted_by`, from the verified signer of the
model.submitted), never the claimed `submitter`. A workflow with `require_signed_submission` fails
an unsigned submission at once, before anything it names is fetched: an unauthenticated sender
makes the validator read no URL of its choosing, and the failure bans no digest (no bytes were
verified), so an unsigned copy of someone's artifact cannot get that artifact rejected for good.
"""

from __future__ import annotations

import asyncio

from services.validator import checks, fairness, folder_scan, security
from shared.events import CheckResult, ChecksFailed, ChecksPassed, Production, Submission, Submitter
from shared.production import Unknown
from shared.signing import Principal
from shared.sources import ArtifactError, ArtifactSource
from shared.workflow.matching import Loaded
from shared.workflow.schema import ChecksStep, Fairness


def submitter_of(signer: Principal | None) -> Submitter | None:
    """The verified signer of a model.submitted as the checks event records it (None: unsigned)."""
    if signer is None:
        return None
    return Submitter(name=signer.name, owner=signer.owner or None, team=signer.team or None)


def signed(outcome: ChecksPassed | ChecksFailed, submitted_by: Submitter | None) -> ChecksPassed | ChecksFailed:
    """The checks event, recording who proved they submitted (the event_id stays the cause's)."""
    return outcome.model_copy(update={"submitted_by": submitted_by})


def refuses_unsigned(loaded: Loaded | None, submitted_by: Submitter | None) -> str | None:
    """The workflow's name when it requires signed submissions and this one is unsigned."""
    if loaded is not None and loaded.workflow.require_signed_submission and submitted_by is None:
        return loaded.workflow.name
    return None


def unsigned_refused(workflow: str) -> CheckResult:
    return CheckResult(name="signed_submission", passed=False,
                       message=f"the submission is unsigned, and workflow {workflow!r} requires signed "
                               "submissions (require_signed_submission): submit with the pipeline's "
                               "signing key; nothing it names was read")


async def run_checks(submission: Submission, step: ChecksStep | None, no_match: str,
                     production: Production | Unknown | None, sources: ArtifactSource,
                     max_document_bytes: int, *, unsigned_refused_by: str | None = None) -> list[CheckResult]:
    """Every check `step` asks for, in order; without a workflow, integrity and why none matched.
    Model cards and evaluation files are read up to `max_document_bytes`, artifacts up to the
    sources' own limit. `unsigned_refused_by`: the workflow that requires signed submissions when
    this one is unsigned; then it fails at once, and nothing is fetched."""
    if unsigned_refused_by is not None:
        return [unsigned_refused(unsigned_refused_by)]
    candidate = submission.candidate
    results = await _artifact(candidate.artifact_uri, candidate.artifact_sha256, step, sources)
    if step is None:
        return [*results, checks.no_workflow(no_match)]
    inputs = step.inputs
    results.append(checks.lineage(submission, inputs.lineage))
    results += checks.thresholds(submission.metrics, inputs.min, inputs.max)
    if inputs.fairness is not None:
        results += await _fairness(submission, inputs.fairness, sources, max_document_bytes)
    if inputs.regression is not None:
        results += checks.regression(submission.metrics, production,
                                     inputs.regression.higher_is_better, inputs.regression.lower_is_better)
    card = await _document(submission.model_card_uri, sources, max_document_bytes)
    if (result := checks.document("model_card", inputs.model_card, *card)) is not None:
        results.append(result)
    return results


async def _artifact(uri: str, declared: str, step: ChecksStep | None,
                    sources: ArtifactSource) -> list[CheckResult]:
    """Integrity, and the security scan of the very bytes that were hashed (of every file, for a
    folder artifact: its tree digest, shared.sources.tree)."""
    try:
        fetched = await sources.fetch(uri)
    except (ArtifactError, OSError) as exc:
        return [checks.integrity(declared, None, str(exc))]
    try:
        integrity = checks.integrity(declared, fetched.sha256)
        if not integrity.passed or step is None:
            return [integrity]  # nothing to scan against: the checks fail anyway
        allowed = step.inputs.security.allowed_globals
        scan = folder_scan.scan_folder if fetched.folder else security.scan
        return [integrity, await asyncio.to_thread(scan, fetched.path, allowed)]
    finally:
        fetched.cleanup()


async def _fairness(submission: Submission, spec: Fairness, sources: ArtifactSource,
                    max_bytes: int) -> list[CheckResult]:
    results = []
    if submission.group_metrics or submission.evaluation_uri is None:
        results.append(checks.parity_ratio(submission.group_metrics, spec.min_parity_ratio))
        if spec.max_equalized_odds_difference is not None:
            results.append(fairness.equalized_odds(submission.group_metrics, spec.max_equalized_odds_difference))
    if submission.evaluation_uri is not None:
        try:
            fetched = await sources.fetch(submission.evaluation_uri, max_bytes)
        except (ArtifactError, OSError) as exc:
            return [*results, CheckResult(name="fairness:evaluation", passed=False,
                                          message=f"evaluation file: {exc}")]
        if fetched.folder:
            fetched.cleanup()
            return [*results, CheckResult(name="fairness:evaluation", passed=False,
                                          message="evaluation file: it is a folder; point evaluation_uri at the file")]
        try:
            results += await asyncio.to_thread(fairness.from_evaluation, fetched.path, spec.min_parity_ratio,
                                               spec.max_equalized_odds_difference)
        finally:
            fetched.cleanup()
    return results


async def _document(uri: str | None, sources: ArtifactSource, max_bytes: int) -> tuple[str | None, str | None]:
    """(sha256, None) for a readable, non-empty text document; (None, error); (None, None) if absent."""
    if uri is None:
        return None, None
    try:
        fetched = await sources.fetch(uri, max_bytes)
    except (ArtifactError, OSError) as exc:
        return None, f"model card: {exc}"
    if fetched.folder:
        fetched.cleanup()
        return None, "model card: it is a folder; point model_card_uri at the Markdown file"
    try:
        text = await asyncio.to_thread(fetched.path.read_bytes)
        if not text.strip():
            return None, "model card is empty"
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return None, "model card is not UTF-8 text (Markdown or plain text expected)"
        return fetched.sha256, None
    finally:
        fetched.cleanup()
