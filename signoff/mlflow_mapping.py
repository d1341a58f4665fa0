"""From an MLflow registered model version to a Signoff submission: the pure rules.

No MLflow client here (signoff/mlflow_source.py reads the registry): these functions take what was
read, as plain values, and decide names, metrics, lineage and ids, so every rule is tested without
a server.

The rules, also in docs/mlflow.md:
- a reference is `models:/NAME/VERSION` or `models:/NAME@ALIAS` (MLflow's own URI forms);
- the Signoff model name is SIGNOFF_MLFLOW_MODEL_NAMES[NAME]; an unlisted NAME is refused while
  SIGNOFF_MLFLOW_STRICT_NAMES is on (the default): whoever may create a registered model in MLflow
  must not choose which Signoff model their versions are submitted as. With it off, an unlisted
  NAME is lowercased, every run of ASCII characters other than a-z 0-9 . _ - replaced by one '-',
  leading and trailing punctuation dropped ("Churn Model" -> "churn-model"); a NAME with
  characters outside ASCII is refused (a look-alike such as U+2010 must not become "-"), and so is
  one that would become a listed name's target (that Signoff model is the listed name's), or is
  still not a name (empty, over 64 characters);
- the Signoff version is the version number MLflow gives (its "3", however it was asked for);
- metrics are the run's, renamed by SIGNOFF_MLFLOW_METRICS when it is set (then only those listed);
- the data version is the run's SIGNOFF_MLFLOW_DATA_VERSION_TAG tag, else the digest of the one
  dataset the run logged as input (several: their digests joined by '+', sorted);
- the code commit is the run's `mlflow.source.git.commit` tag;
- the submission id and event id are uuid5 of (tracking URI, NAME, VERSION), as MLflow spells them
  in the version it returns: a webhook, a poll and a redelivery of the same version make the same
  event, which consumers drop as a duplicate.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

GIT_COMMIT_TAG = "mlflow.source.git.commit"
USER_TAG = "mlflow.user"
# The namespace of the ids derived from a model version: fixed for ever, or ids change.
NAMESPACE = uuid.UUID("5d1f0c1e-8a4b-5f63-9d7e-6c0b5a1e3f27")

# Matched whole (fullmatch): with re.match, "$" also matches before a trailing newline.
_REF = re.compile(r"models:/(?P<name>[^/@\x00-\x1f\x7f]{1,256})"
                  r"(?:/(?P<version>[0-9]{1,10})|@(?P<alias>[A-Za-z0-9_-]{1,255}))")
_OTHER = re.compile(r"[^a-z0-9._-]+")
_SIGNOFF_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class MappingError(ValueError):
    """What was read cannot become a submission; the message says why and what to do."""


@dataclass(frozen=True)
class Reference:
    """A registered model version asked for: NAME with its VERSION or an ALIAS."""

    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"


def parse_reference(text: str) -> Reference:
    """`models:/NAME/VERSION` or `models:/NAME@ALIAS`; MappingError otherwise."""
    match = _REF.fullmatch(text.strip())
    if match is None:
        raise MappingError(f"--mlflow {text[:300]!r}: expected models:/NAME/VERSION (e.g. models:/churn/3) "
                           "or models:/NAME@ALIAS (e.g. models:/churn@champion)")
    return Reference(match["name"], match["version"], match["alias"])


def signoff_name(mlflow_name: str, names: Mapping[str, str], *, strict: bool) -> str:
    """The Signoff model name of an MLflow registered model (see the module's rules)."""
    shown = mlflow_name[:100]
    if (mapped := names.get(mlflow_name)) is not None:
        if not _SIGNOFF_NAME.fullmatch(mapped):
            raise MappingError(f"MLflow model {shown!r} is mapped to {mapped[:80]!r}, not a Signoff name "
                               f"({_RULE}); fix its entry in SIGNOFF_MLFLOW_MODEL_NAMES")
        return mapped
    converted = _OTHER.sub("-", mlflow_name.lower()).strip("-._") if mlflow_name.isascii() else ""
    target = converted if _SIGNOFF_NAME.fullmatch(converted) else "my-model"
    example = f'e.g. SIGNOFF_MLFLOW_MODEL_NAMES=\'{{"{mlflow_name[:60]}": "{target}"}}\''
    if strict:
        raise MappingError(f"MLflow model {shown!r} is not listed in SIGNOFF_MLFLOW_MODEL_NAMES, and only listed "
                           "models are submitted (SIGNOFF_MLFLOW_STRICT_NAMES is on): list it with the Signoff "
                           f"model its versions are, {example}")
    if not mlflow_name.isascii():
        odd = next(c for c in mlflow_name if not c.isascii())
        raise MappingError(f"MLflow model {shown!r} has characters outside ASCII (U+{ord(odd):04X}), which are "
                           "not converted, so that a look-alike never becomes another model's name; map it "
                           f"explicitly, {example}")
    if not _SIGNOFF_NAME.fullmatch(converted):
        raise MappingError(f"MLflow model {shown!r} has no valid Signoff name ({converted[:80]!r}: {_RULE}); map "
                           f"it with {example}")
    owners = sorted(name for name, listed in names.items() if listed == converted)
    if owners:
        raise MappingError(f"MLflow model {shown!r} would become {converted!r}, which SIGNOFF_MLFLOW_MODEL_NAMES "
                           f"gives to {owners[0][:100]!r}: only that MLflow model is submitted as {converted!r}; "
                           "map this one to another name in SIGNOFF_MLFLOW_MODEL_NAMES")
    return converted


_RULE = "lowercase letters, digits, '.', '_', '-', at most 64, starting with a letter or digit"


def metrics(run_metrics: Mapping[str, float], renames: Mapping[str, str]) -> dict[str, float]:
    """The run's metrics, or with `renames` only those it lists, under their Signoff names."""
    if not renames:
        return dict(run_metrics)
    return {signoff: run_metrics[mlflow] for mlflow, signoff in renames.items() if mlflow in run_metrics}


def data_version(tags: Mapping[str, str], tag: str, dataset_digests: tuple[str, ...]) -> str | None:
    """The run's data version tag, else its logged datasets' digests; None when it has neither."""
    if value := tags.get(tag, "").strip():
        return value
    digests = sorted({d.strip() for d in dataset_digests if d.strip()})
    return "+".join(digests) or None


def submission_id(tracking_uri: str, name: str, version: str) -> uuid.UUID:
    """The submission id of NAME/VERSION on the registry at `tracking_uri` (the same every time)."""
    return uuid.uuid5(NAMESPACE, f"{tracking_uri.rstrip('/')}\n{name}\n{version}")


def event_id(tracking_uri: str, name: str, version: str) -> uuid.UUID:
    """The event id of its model.submitted: derived, so a resubmission is a duplicate."""
    return uuid.uuid5(submission_id(tracking_uri, name, version), "signoff.model.submitted")


@dataclass(frozen=True)
class VersionFacts:
    """What MLflow says about one registered model version and its run."""

    name: str
    version: str
    run_id: str | None
    download_uri: str
    user: str | None  # the version's user_id, else the run's mlflow.user tag, else its user_id
    status: str = "READY"  # MLflow's: PENDING_REGISTRATION, FAILED_REGISTRATION or READY
    run_metrics: Mapping[str, float] = field(default_factory=dict)
    run_tags: Mapping[str, str] = field(default_factory=dict)
    dataset_digests: tuple[str, ...] = ()


def submission_data(facts: VersionFacts, sha256: str, *, names: Mapping[str, str],
                    metric_names: Mapping[str, str], data_version_tag: str, strict_names: bool) -> dict:
    """The Submission fields, as `signoff.manifest.build` validates them (missing lineage is left
    out, so the error names the field: candidate.code_commit, candidate.data_version)."""
    candidate: dict[str, object] = {
        "model": signoff_name(facts.name, names, strict=strict_names), "version": facts.version,
        "artifact_uri": facts.download_uri, "artifact_sha256": sha256}
    if (data := data_version(facts.run_tags, data_version_tag, facts.dataset_digests)) is not None:
        candidate["data_version"] = data
    if commit := facts.run_tags.get(GIT_COMMIT_TAG, "").strip():
        candidate["code_commit"] = commit
    user = facts.user or "unknown MLflow user"
    return {"candidate": candidate, "metrics": metrics(facts.run_metrics, metric_names),
            "submitter": f"{user} (mlflow models:/{facts.name}/{facts.version})"[:512],
            **({"training_run_id": facts.run_id} if facts.run_id else {})}


def user_of(version_user: str | None, run_tags: Mapping[str, str], run_user: str | None) -> str | None:
    """Who registered or trained the version, as MLflow knows them."""
    for value in (version_user, run_tags.get(USER_TAG), run_user):
        if value and value.strip():
            return value.strip()
    return None
