"""From an MLflow registered model version to a Signoff submission: the pure rules.

No MLflow client here (signoff/mlflow_source.py reads the registry): these functions take what was
read, as plain values, and decide names, metrics, lineage and ids, so every rule is tested without
a server.

The rules, also in docs/mlflow.md:
- a reference is `models:/NAME/VERSION` or `models:/NAME@ALIAS` (MLflow's own URI forms);
- the Signoff model name is SIGNOFF_MLFLOW_MODEL_NAMES[NAME] when listed; otherwise NAME lowercased,
  every run of characters other than a-z 0-9 . _ - replaced by one '-', leading and trailing
  punctuation dropped ("Churn Model" -> "churn-model"); a name that still is not one (empty, or
  over 64 characters) is refused, naming the setting that maps it;
- the Signoff version is the MLflow version number;
- metrics are the run's, renamed by SIGNOFF_MLFLOW_METRICS when it is set (then only those listed);
- the data version is the run's SIGNOFF_MLFLOW_DATA_VERSION_TAG tag, else the digest of the one
  dataset the run logged as input (several: their digests joined by '+', sorted);
- the code commit is the run's `mlflow.source.git.commit` tag;
- the submission id and event id are uuid5 of (tracking URI, NAME, VERSION): a webhook, a poll
  and a redelivery of the same version make the same event, which consumers drop as a duplicate.
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

_REF = re.compile(r"^models:/(?P<name>[^/@]{1,256})(?:/(?P<version>[0-9]{1,10})|@(?P<alias>[A-Za-z0-9_-]{1,255}))$")
_OTHER = re.compile(r"[^a-z0-9._-]+")
_SIGNOFF_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


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
    match = _REF.match(text.strip())
    if match is None:
        raise MappingError(f"--mlflow {text[:300]!r}: expected models:/NAME/VERSION (e.g. models:/churn/3) "
                           "or models:/NAME@ALIAS (e.g. models:/churn@champion)")
    return Reference(match["name"], match["version"], match["alias"])


def signoff_name(mlflow_name: str, names: Mapping[str, str]) -> str:
    """The Signoff model name of an MLflow registered model (see the module's rules)."""
    mapped = names.get(mlflow_name)
    candidate = mapped if mapped is not None else _OTHER.sub("-", mlflow_name.lower()).strip("-._")
    if not _SIGNOFF_NAME.match(candidate):
        where = "its entry in SIGNOFF_MLFLOW_MODEL_NAMES" if mapped is not None else \
            f'SIGNOFF_MLFLOW_MODEL_NAMES, e.g. {{"{mlflow_name[:60]}": "churn-model"}}'
        raise MappingError(f"MLflow model {mlflow_name[:100]!r} has no valid Signoff name ({candidate[:80]!r}: "
                           "lowercase letters, digits, '.', '_', '-', at most 64, starting with a letter or "
                           f"digit); map it with {where}")
    return candidate


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
    run_metrics: Mapping[str, float] = field(default_factory=dict)
    run_tags: Mapping[str, str] = field(default_factory=dict)
    dataset_digests: tuple[str, ...] = ()


def submission_data(facts: VersionFacts, sha256: str, *, names: Mapping[str, str],
                    metric_names: Mapping[str, str], data_version_tag: str) -> dict:
    """The Submission fields, as `signoff.manifest.build` validates them (missing lineage is left
    out, so the error names the field: candidate.code_commit, candidate.data_version)."""
    candidate: dict[str, object] = {
        "model": signoff_name(facts.name, names), "version": facts.version,
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
