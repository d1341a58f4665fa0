"""From an MLflow version to a submission: references, names, metrics, lineage, ids (pure)."""

from __future__ import annotations

import pytest

from shared.events import Submission
from signoff import mlflow_mapping as m
from signoff.mlflow_mapping import MappingError, Reference, VersionFacts

SHA = "a" * 64


@pytest.mark.parametrize(("text", "ref"), [
    ("models:/churn/3", Reference("churn", "3")),
    ("models:/Churn Model@champion", Reference("Churn Model", alias="champion")),
    ("  models:/prod.ml.churn/12 ", Reference("prod.ml.churn", "12")),
])
def test_references_are_mlflows_uri_forms(text: str, ref: Reference) -> None:
    assert m.parse_reference(text) == ref
    assert str(ref) in (text.strip(),)


@pytest.mark.parametrize("text", ["churn/3", "models:/churn", "models:/churn/latest", "models:/churn/3/x",
                                  "models:/@champion", "runs:/abc/model", "models:/churn@bad alias"])
def test_other_references_are_refused_with_the_expected_forms(text: str) -> None:
    with pytest.raises(MappingError, match=r"models:/NAME/VERSION .* models:/NAME@ALIAS"):
        m.parse_reference(text)


@pytest.mark.parametrize(("mlflow", "signoff"), [
    ("churn", "churn"), ("Churn Model", "churn-model"), ("prod.ml.Fraud_Detector", "prod.ml.fraud_detector"),
    ("  Spaced  out!! ", "spaced-out"), ("-lead", "lead"),
])
def test_names_are_lowercased_with_other_characters_as_one_dash(mlflow: str, signoff: str) -> None:
    assert m.signoff_name(mlflow, {}, strict=False) == signoff


def test_an_explicit_name_wins_and_must_itself_be_valid() -> None:
    assert m.signoff_name("Churn Model", {"Churn Model": "churn"}, strict=True) == "churn"
    with pytest.raises(MappingError, match="its entry in SIGNOFF_MLFLOW_MODEL_NAMES"):
        m.signoff_name("Churn Model", {"Churn Model": "Not Valid"}, strict=True)


@pytest.mark.parametrize("name", ["!!!", "é", "x" * 65])
def test_a_name_with_no_valid_mapping_is_refused_naming_the_setting(name: str) -> None:
    with pytest.raises(MappingError, match="SIGNOFF_MLFLOW_MODEL_NAMES"):
        m.signoff_name(name, {}, strict=False)


def test_metrics_pass_through_or_are_renamed_and_chosen_by_the_map() -> None:
    run = {"val_auc": 0.97, "accuracy": 0.9, "loss": 0.3}
    assert m.metrics(run, {}) == run
    assert m.metrics(run, {"val_auc": "auc", "missing": "x"}) == {"auc": 0.97}


def test_data_version_is_the_tag_else_the_logged_datasets_digests() -> None:
    assert m.data_version({"data_version": "2026-11-01"}, "data_version", ("d1",)) == "2026-11-01"
    assert m.data_version({"data_version": "  "}, "data_version", ("d2", "d1", "d2")) == "d1+d2"
    assert m.data_version({"ds": "v7"}, "ds", ()) == "v7"
    assert m.data_version({}, "data_version", ()) is None


def test_ids_are_the_same_for_the_same_version_and_differ_otherwise() -> None:
    a = m.submission_id("http://mlflow:5000", "churn", "3")
    assert a == m.submission_id("http://mlflow:5000/", "churn", "3")
    assert a != m.submission_id("http://mlflow:5000", "churn", "4")
    assert a != m.submission_id("http://other:5000", "churn", "3")
    assert m.event_id("http://mlflow:5000", "churn", "3") == m.event_id("http://mlflow:5000", "churn", "3") != a


def facts(**tags: str) -> VersionFacts:
    return VersionFacts(name="Churn Model", version="3", run_id="r123", download_uri="s3://models/0/r/artifacts/model",
                        user="alice", run_metrics={"accuracy": 0.93},
                        run_tags={m.GIT_COMMIT_TAG: "3f2c9ab", "data_version": "2026-11-01", **tags})


def test_a_complete_version_makes_a_valid_submission() -> None:
    data = m.submission_data(facts(), SHA, names={"Churn Model": "churn-model"}, metric_names={},
                             data_version_tag="data_version", strict_names=True)
    submission = Submission.model_validate(data)
    assert submission.candidate.model_dump() == {
        "model": "churn-model", "version": "3", "artifact_uri": "s3://models/0/r/artifacts/model",
        "artifact_sha256": SHA, "data_version": "2026-11-01", "code_commit": "3f2c9ab"}
    assert submission.metrics == {"accuracy": 0.93}
    assert submission.training_run_id == "r123"
    assert submission.submitter == "alice (mlflow models:/Churn Model/3)"


def test_missing_lineage_is_left_out_so_validation_names_the_field() -> None:
    bare = VersionFacts(name="churn", version="1", run_id=None, download_uri="s3://b/k", user=None)
    data = m.submission_data(bare, SHA, names={}, metric_names={}, data_version_tag="data_version",
                             strict_names=False)
    assert "code_commit" not in data["candidate"] and "data_version" not in data["candidate"]
    assert "training_run_id" not in data
    assert data["submitter"].startswith("unknown MLflow user")


def test_the_user_is_the_versions_then_the_runs_tag_then_the_runs_owner() -> None:
    assert m.user_of("carol", {m.USER_TAG: "bob"}, "root") == "carol"
    assert m.user_of("", {m.USER_TAG: "bob"}, "root") == "bob"
    assert m.user_of(None, {}, "root") == "root"
    assert m.user_of(None, {}, None) is None


# Names: only listed MLflow models are submitted by default, and conversion (when it is turned on)
# never makes a look-alike or a listed model's target into that model (attack13, finding 4).

def test_by_default_only_listed_names_are_submitted() -> None:
    assert m.signoff_name("Churn Model", {"Churn Model": "churn-model"}, strict=True) == "churn-model"
    for unlisted in ("churn-model", "churn model", "fraud"):
        with pytest.raises(MappingError, match="not listed in SIGNOFF_MLFLOW_MODEL_NAMES.*SIGNOFF_MLFLOW_STRICT_NAMES"):
            m.signoff_name(unlisted, {"Churn Model": "churn-model"}, strict=True)


@pytest.mark.parametrize("look_alike", ["churn\u2010model", "churn\u00a0model", "Churn\u2013Model", "\uff43hurn-model",
                                        "churn-mode\u0142"])
def test_characters_outside_ascii_are_refused_rather_than_converted(look_alike: str) -> None:
    with pytest.raises(MappingError, match="outside ASCII"):
        m.signoff_name(look_alike, {}, strict=False)


@pytest.mark.parametrize("unlisted", ["churn-model", "--churn-model..", "Churn Model", "CHURN MODEL"])
def test_an_unlisted_name_never_becomes_a_listed_target(unlisted: str) -> None:
    names = {"Churn Model (prod)": "churn-model"}
    with pytest.raises(MappingError, match="SIGNOFF_MLFLOW_MODEL_NAMES gives to 'Churn Model \\(prod\\)'"):
        m.signoff_name(unlisted, names, strict=False)
    assert m.signoff_name("Churn Model (prod)", names, strict=False) == "churn-model"


@pytest.mark.parametrize("entry", ["churn\n", "churn\u2010model", "Churn"])
def test_a_listed_target_is_matched_whole(entry: str) -> None:
    with pytest.raises(MappingError, match="its entry in SIGNOFF_MLFLOW_MODEL_NAMES"):
        m.signoff_name("x", {"x": entry}, strict=True)


def test_a_reference_is_matched_whole_and_names_hold_no_control_characters() -> None:
    for text in ("models:/ch\nurn/3", "models:/churn\x00/3", "models:/churn/3\nx"):
        with pytest.raises(MappingError):
            m.parse_reference(text)
