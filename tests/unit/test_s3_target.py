"""The s3 deploy target against a real S3 API server (moto in server mode, the `s3` fixture): the
version then the pointer, immutable versions, bytes that changed since the checks (nothing
written), places not allowed, rollback and revocation, canary traffic, folders, large files in
parts, an S3 that stays down, and `signoff verify` of S3 URIs that are no version folder."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.deployer import targets
from services.deployer.rollout import FULL, Release, Stage
from services.deployer.settings import DeployerSettings
from services.deployer.targets import Deps, RetryPolicy, TargetError
from services.deployer.targets import _s3_install as install
from services.deployer.targets import _s3_objects as objects
from services.deployer.targets import s3 as s3_target
from shared import signing
from shared.events import Candidate
from shared.sources import ArtifactSource, Fetched, tree
from shared.workflow.loading import load_folder
from signoff.devstack import free_port
from signoff.verify_s3 import verify_s3
from tests import keys
from tests.unit import factories as f

MODEL = "fraud-detector"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Deliveries:
    def delivered(self, key: str) -> bool:
        return False

    def record_delivery(self, key: str) -> None:
        pass


@pytest.fixture
def aws_env(s3, monkeypatch):
    """The standard AWS variables (the chain boto3 reads); nothing about credentials in Signoff's settings."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def bucket(s3, aws_env) -> str:
    name = f"serving-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@dataclass
class World:
    s3: Any  # a boto3 client of the test's own, to look at the bucket
    bucket: str
    roots: Path
    settings: DeployerSettings
    deps: Deps

    def target(self, prefix: str = "models/prod", bucket: str | None = None) -> s3_target.S3Target:
        inputs = targets.INPUTS.validate_python({"target": "s3", "bucket": bucket or self.bucket, "prefix": prefix})
        return targets.build(inputs, self.deps)  # type: ignore[return-value]

    def release(self, version: str, data: bytes, approved: bytes | None = None) -> Release:
        path = self.roots / f"{MODEL}-{version}-{uuid.uuid4().hex[:6]}.onnx"
        path.write_bytes(data)
        cause = f.submitted(f.submission(f.candidate(version=version, artifact_uri=path.as_uri(),
                                                     artifact_sha256=sha(approved if approved is not None else data))))
        return Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                       approval=f.decided(cause), deploy=targets.INPUTS.validate_python(
                           {"target": "s3", "bucket": self.bucket, "prefix": "models/prod"}))

    def keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def json(self, key: str) -> dict:
        return json.loads(self.read(key))


def world_of(s3, bucket: str, tmp_path: Path, **fields: Any) -> World:
    roots = tmp_path / "artifacts"
    roots.mkdir(exist_ok=True)
    settings = DeployerSettings(**{"artifact_roots": (roots,), "download_dir": tmp_path / "downloads",
                                   "s3_endpoint_url": s3.endpoint_url, "s3_max_attempts": 1,
                                   "s3_target_prefixes": (f"s3://{bucket}/models/",), **fields})
    deps = Deps(settings, ArtifactSource.from_settings(settings, settings.download_dir), Deliveries(),
                RetryPolicy(attempts=2, backoff=0.0, max_backoff=0.0))
    return World(s3.client(), bucket, roots, settings, deps)


@pytest.fixture
def world(s3, bucket, tmp_path) -> World:
    return world_of(s3, bucket, tmp_path)


async def deploy(world: World, release: Release, target: s3_target.S3Target | None = None) -> str:
    target = target or world.target()
    location = await target.prepare(release, {"artifact_sha256": release.candidate.artifact_sha256,
                                              "version": release.version})
    await target.shift(release, FULL, None, "key")
    return location


def sent(world: World, operation: str = "PutObject") -> list[tuple[str, str | None]]:
    """(key, x-amz-checksum-sha256) of each request the deployer's client sends, in order."""
    seen: list[tuple[str, str | None]] = []

    def hook(params: dict, **_: Any) -> None:
        key = params["url_path"].partition("?")[0].lstrip("/").removeprefix(world.bucket + "/")
        seen.append((key, params["headers"].get("x-amz-checksum-sha256")))

    s3_target._client(world.settings).meta.events.register(f"before-call.s3.{operation}", hook)
    return seen


async def test_the_version_goes_up_whole_then_the_pointer_moves(world):
    release = world.release("1.0.0", b"weights v1")
    seen = sent(world)
    location = await deploy(world, release)
    base = f"models/prod/{MODEL}"
    assert location == f"s3://{world.bucket}/{base}/1.0.0/"
    artifact = f"{base}/1.0.0/" + Path(release.candidate.artifact_uri).name
    assert world.keys() == sorted([artifact, f"{base}/1.0.0/manifest.json", f"{base}/PRODUCTION",
                                   f"{base}/traffic.json"])
    assert world.read(artifact) == b"weights v1"
    assert world.json(f"{base}/1.0.0/manifest.json")["artifact_sha256"] == sha(b"weights v1")
    assert [key for key, _ in seen] == [artifact, f"{base}/1.0.0/manifest.json", f"{base}/PRODUCTION",
                                        f"{base}/traffic.json"]
    pointer = world.json(f"{base}/PRODUCTION")
    assert {k: pointer[k] for k in ("model", "version", "sha256", "submission_id", "location", "attestation")} == {
        "model": MODEL, "version": "1.0.0", "sha256": sha(b"weights v1"), "submission_id": str(release.submission_id),
        "location": location, "attestation": None}
    assert world.json(f"{base}/traffic.json") == {"stage": "full", "split": {"1.0.0": 100}}


async def test_each_object_is_sent_with_the_approved_sha256_for_s3_to_check(world):
    release = world.release("1.0.0", b"weights v1")
    seen = sent(world)
    await deploy(world, release)
    artifact = f"models/prod/{MODEL}/1.0.0/" + Path(release.candidate.artifact_uri).name
    assert dict(seen)[artifact] == objects.checksum(release.candidate.artifact_sha256)
    assert all(checksum for _, checksum in seen)
    head = world.s3.head_object(Bucket=world.bucket, Key=artifact, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == objects.checksum(release.candidate.artifact_sha256)


async def test_a_repeat_installs_nothing_new_and_another_digest_is_refused(world):
    release = world.release("1.0.0", b"weights v1")
    await deploy(world, release)
    before = {k: world.read(k) for k in world.keys() if not k.endswith(("PRODUCTION", "traffic.json"))}
    await deploy(world, release)  # a redelivery
    other = world.release("1.0.0", b"other weights")
    with pytest.raises(TargetError, match="already deployed with artifact .*versions are immutable"):
        await world.target().prepare(other, {"artifact_sha256": other.candidate.artifact_sha256})
    assert {k: world.read(k) for k in before} == before
    assert world.json(f"models/prod/{MODEL}/PRODUCTION")["sha256"] == sha(b"weights v1")


async def test_bytes_changed_since_the_checks_fail_and_nothing_is_written(world):
    changed = world.release("1.0.0", b"swapped weights", approved=b"weights v1")
    with pytest.raises(TargetError, match="changed since it was checked"):
        await world.target().prepare(changed, {})
    assert world.keys() == []


async def test_bytes_swapped_after_the_deployers_check_do_not_reach_the_bucket(s3, bucket, tmp_path):
    """A file:// artifact is read in place: one swapped between the check and the upload is caught
    by the verified private copy the upload reads from."""

    class SwappingDeps(Deps):
        async def verified(self, candidate: Candidate) -> Fetched:
            fetched = await super().verified(candidate)
            fetched.path.write_bytes(b"swapped after the check")
            return fetched

    world = world_of(s3, bucket, tmp_path)
    world.deps = SwappingDeps(world.settings, world.deps.source, world.deps.deliveries, world.deps.policy)
    release = world.release("1.0.0", b"weights v1")
    with pytest.raises(TargetError, match="changed since it was checked"):
        await world.target().prepare(release, {})
    assert world.keys() == []
    assert not list((tmp_path / "downloads" / install.STAGING).iterdir())  # the copy is removed


async def test_a_place_not_allowed_is_a_workflow_problem_and_is_refused(world, tmp_path):
    text = ("name: s3-models\ndefault: true\nsteps:\n  - name: deploy\n    type: deploy\n"
            f"    inputs: {{target: s3, bucket: {world.bucket}, prefix: models-evil/prod}}\n")
    workflows = load_folder(f.workflow_folder(tmp_path / "wf", **{"s3-models": text}), targets.INPUTS)
    [problem] = targets.problems(workflows, world.settings)
    assert problem.startswith("workflow 's3-models': s3 target s3://") and "DEPLOYER_S3_TARGET_PREFIXES" in problem
    assert targets.problems(workflows, world.settings.model_copy(update={"s3_target_prefixes": ()}))
    allowed = world.settings.model_copy(update={"s3_target_prefixes": (f"s3://{world.bucket}/models-evil/",)})
    assert targets.problems(workflows, allowed) == []
    release = world.release("1.0.0", b"weights v1")
    for target in (world.target("models-evil/prod"), world.target("models", bucket="another-bucket")):
        with pytest.raises(TargetError, match="is not under an allowed prefix"):
            await target.prepare(release, {})
        with pytest.raises(TargetError, match="is not under an allowed prefix"):
            await target.restore(MODEL, None, "k", {})
    assert world.keys() == []


@pytest.mark.parametrize("prefix", ["../models", "models/../../x", "/models", "models/", "a//b", ".hidden"])
def test_prefixes_with_dot_dot_or_empty_segments_are_refused_when_loaded(prefix):
    with pytest.raises(ValueError, match="must be '/'-separated segments"):
        targets.INPUTS.validate_python({"target": "s3", "bucket": "serving", "prefix": prefix})


async def test_rollback_moves_the_pointer_back_and_nothing_leaves_it_empty(world):
    v1, v2 = world.release("1", b"weights v1"), world.release("2", b"weights v2")
    await deploy(world, v1)
    await deploy(world, v2)
    pointer = f"models/prod/{MODEL}/PRODUCTION"
    assert world.json(pointer)["version"] == "2"
    await world.target().restore(MODEL, v1, "k", {"operation": "rollback"})
    assert (world.json(pointer)["version"], world.json(pointer)["sha256"]) == ("1", sha(b"weights v1"))
    assert world.json(f"models/prod/{MODEL}/traffic.json") == {"stage": "rollback", "split": {"1": 100}}
    await world.target().restore(MODEL, None, "k", {"operation": "revoke"})
    assert pointer not in world.keys() and f"models/prod/{MODEL}/traffic.json" not in world.keys()
    never = world.release("3", b"weights v3")
    with pytest.raises(TargetError, match="is not installed"):
        await world.target().restore(MODEL, never, "k", {})


async def test_a_canary_stage_records_the_split_and_leaves_the_pointer(world):
    v1, v2 = world.release("1", b"weights v1"), world.release("2", b"weights v2")
    await deploy(world, v1)
    target = world.target()
    await target.prepare(v2, {"artifact_sha256": v2.candidate.artifact_sha256})
    await target.shift(v2, Stage(name="canary", traffic_percent=10), v1, "k")
    assert world.json(f"models/prod/{MODEL}/traffic.json") == {"stage": "canary", "split": {"2": 10, "1": 90}}
    assert world.json(f"models/prod/{MODEL}/PRODUCTION")["version"] == "1"


async def test_revoke_marks_the_version_and_removes_the_pointer_that_named_it(world):
    v1, v2 = world.release("1", b"weights v1"), world.release("2", b"weights v2")
    await deploy(world, v1)
    await deploy(world, v2)
    why = {"operation": "revoke", "requested_by": "alice", "reason": "leaks"}
    await world.target().retire(v1, "k", why)  # not in production: the pointer stays
    assert world.json(f"models/prod/{MODEL}/PRODUCTION")["version"] == "2"
    await world.target().retire(v2, "k", why)
    assert f"models/prod/{MODEL}/PRODUCTION" not in world.keys()
    assert world.json(f"models/prod/{MODEL}/2/REVOKED") == {"model": MODEL, "version": "2", **why}
    await world.target().retire(v2, "k", {**why, "reason": "again"})  # a repeat keeps the first mark
    assert world.json(f"models/prod/{MODEL}/2/REVOKED")["reason"] == "leaks"
    await world.target().retire(world.release("9", b"never deployed"), "k", why)
    assert not any("/9/" in k for k in world.keys())


async def test_a_folder_goes_up_file_by_file_under_its_tree_digest(world, tmp_path):
    files = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04N.", "data/weights.bin": b"\x01" * 3000}
    folder = tmp_path / "artifacts" / "churn-model"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    digest = tree.digest(tree.TreeFile(rel, sha(data), len(data)) for rel, data in files.items())
    fetched = Fetched(folder, digest, 3012, temporary=False, files=3, folder=True)
    candidate = f.candidate(version="2.0.0", artifact_uri=folder.as_uri() + "/", artifact_sha256=digest)
    staged = install.staged(fetched, digest, "churn-model", world.settings.download_dir, 100)
    client, place = s3_target._client(world.settings), world.target().place
    try:
        install.install(client, place, candidate, staged, {"artifact_sha256": digest}, b"{}\n")
    finally:
        staged.cleanup()
    base = f"models/prod/{MODEL}/2.0.0"  # the folder under its name, as the model store installs it
    assert world.keys() == sorted([f"{base}/churn-model/{rel}" for rel in files] + [
        f"{base}/manifest.json", f"{base}/attestation.intoto.json"])
    assert all(world.read(f"{base}/churn-model/{rel}") == data for rel, data in files.items())
    (folder / "model.pkl").write_bytes(b"changed")  # the same folder, other bytes: refused before any write
    other = candidate.model_copy(update={"version": "2.0.1"})
    with pytest.raises(Exception, match="changed since it was checked"):
        install.staged(fetched, digest, "churn-model", world.settings.download_dir, 100)
    assert not any("/2.0.1/" in k for k in world.keys()) and other.version == "2.0.1"


async def test_a_file_over_the_single_put_limit_goes_up_in_checked_parts(world, monkeypatch):
    monkeypatch.setattr(objects, "SINGLE_PUT_MAX", 1024)
    monkeypatch.setattr(objects, "PART", 5 * 2**20)  # S3's smallest part
    data = bytes(range(256)) * (6 * 2**20 // 256 + 3)
    release = world.release("1.0.0", data)
    parts = sent(world, "UploadPart")
    await deploy(world, release)
    key = f"models/prod/{MODEL}/1.0.0/" + Path(release.candidate.artifact_uri).name
    assert world.read(key) == data
    half = 5 * 2**20
    assert [checksum for _, checksum in parts] == [objects.checksum(sha(data[:half])),
                                                   objects.checksum(sha(data[half:]))]


async def test_an_s3_that_stays_down_fails_transiently_then_gives_up(s3, bucket, tmp_path):
    world = world_of(s3, bucket, tmp_path, s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
                     s3_connect_timeout=1.0)
    release = world.release("1.0.0", b"weights v1")
    with pytest.raises(TargetError, match=r"S3: EndpointConnectionError.*gave up after 2 tries"):
        await world.target().prepare(release, {})


async def test_an_artifact_read_from_s3_is_deployed_to_s3_a_file_and_a_folder(s3, bucket, tmp_path):
    """The s3 source downloads (a file, or a folder's files) into the deployer's own folder; what
    goes up is that download, file by file, under the approved digest."""
    source_bucket = f"models-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=source_bucket)
    files = {"MLmodel": b"flavors: {}\n", "data/weights.bin": b"\x02" * 2000}
    client.put_object(Bucket=source_bucket, Key="teams/m.onnx", Body=b"weights from s3")
    for rel, data in files.items():
        client.put_object(Bucket=source_bucket, Key=f"teams/folder/{rel}", Body=data)
    world = world_of(s3, bucket, tmp_path, artifact_s3_prefixes=(f"s3://{source_bucket}/teams/",))
    digest = tree.digest(tree.TreeFile(rel, sha(data), len(data)) for rel, data in files.items())
    for version, uri, sha256 in (("1", f"s3://{source_bucket}/teams/m.onnx", sha(b"weights from s3")),
                                 ("2", f"s3://{source_bucket}/teams/folder/", digest)):
        cause = f.submitted(f.submission(f.candidate(version=version, artifact_uri=uri, artifact_sha256=sha256)))
        release = world.release("0", b"").model_copy(update={
            "submission_id": cause.submission_id, "candidate": cause.submission.candidate})
        await deploy(world, release)
    base = f"models/prod/{MODEL}"
    assert world.read(f"{base}/1/m.onnx") == b"weights from s3"
    assert all(world.read(f"{base}/2/folder/{rel}") == data for rel, data in files.items())
    assert world.json(f"{base}/PRODUCTION")["sha256"] == digest
    assert list((tmp_path / "downloads").iterdir()) in ([], [tmp_path / "downloads" / install.STAGING])


@pytest.mark.parametrize(("uri", "why"), [
    ("s3://serving/models/m/1", "is not a version folder"),
    ("s3://serving/models/../m/1/", "must be safe segments"),
    ("s3://serving/1/", "must be safe segments"),
    ("s3://Bad_Bucket/m/1/", "not a valid S3 bucket name"),
])
def test_verify_refuses_an_s3_uri_that_is_no_version_folder(uri, why):
    verdict = verify_s3(uri, signing.load_trust(keys.keys().trust), s3=object())
    assert not verdict.ok and why in verdict.reason


def test_verify_of_an_empty_place_says_nothing_is_deployed(world):
    verdict = verify_s3(f"s3://{world.bucket}/models/prod/{MODEL}/1/", signing.load_trust(keys.keys().trust),
                        s3=world.s3)
    assert not verdict.ok and "nothing is deployed at" in verdict.reason
