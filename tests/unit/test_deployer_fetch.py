"""The deployer's targets read the approved bytes from `file://` or `http(s)://` (a local registry
here), check them against the approved digest, and leave no download behind whatever happens."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.deployer.rollout import FULL, Release
from services.deployer.settings import DeployerSettings
from services.deployer.targets import Deps, RetryPolicy, TargetError, webhook
from services.deployer.targets import _store_files as store_files
from services.deployer.targets.model_store import ModelStore
from shared.sources import ArtifactSource
from shared.workflow.schema import DeployInputs
from tests.unit import factories as f
from tests.webhook_receiver import Receiver

WEIGHTS = b"onnx-weights\n" + bytes(range(256)) * 64
PREFIX = "/registry/"


class Registry(ThreadingHTTPServer):
    """A model registry on 127.0.0.1: serves `files[path]`, 404 otherwise, and records every path
    asked for. A test changes a file's bytes to play an artifact replaced after approval."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                registry.requests.append(self.path)
                body = registry.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def prefix(self) -> str:
        return f"http://127.0.0.1:{self.server_port}{PREFIX}"

    def publish(self, name: str, body: bytes) -> tuple[str, str]:
        """Serve `body` under the prefix; its URL and sha256."""
        self.files[PREFIX + name] = body
        return self.prefix + name, hashlib.sha256(body).hexdigest()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="module")
def running_registry():
    server = Registry()
    yield server
    server.stop()


@pytest.fixture
def registry(running_registry: Registry) -> Registry:
    running_registry.files.clear()
    running_registry.requests.clear()
    return running_registry


@pytest.fixture
def downloads(tmp_path) -> Path:
    return tmp_path / "downloads"  # not created: the source creates it when it first downloads


class Deliveries:
    """The webhook's record of acknowledged requests, in memory."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def delivered(self, key: str) -> bool:
        return key in self.keys

    def record_delivery(self, key: str) -> None:
        self.keys.add(key)


def deps(tmp_path: Path, source: ArtifactSource, policy: RetryPolicy, **settings: object) -> Deps:
    return Deps(DeployerSettings(model_store=tmp_path / "store", **settings), source, Deliveries(), policy)


@pytest.fixture
def source(tmp_path, registry, downloads) -> ArtifactSource:
    (tmp_path / "artifacts").mkdir()
    return ArtifactSource(roots=(tmp_path / "artifacts",), url_prefixes=(registry.prefix,), max_bytes=2**20,
                          timeout=5.0, workdir=downloads)


@pytest.fixture
def model_store(tmp_path, source) -> ModelStore:
    return ModelStore(tmp_path / "store", deps(tmp_path, source, RetryPolicy(attempts=3, backoff=0.0)))


def release(uri: str, sha256: str, version: str = "1.4.0", deploy: DeployInputs | None = None) -> Release:
    cause = f.submitted(f.submission(f.candidate(version=version, artifact_uri=uri, artifact_sha256=sha256)))
    return Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                   approval=f.decided(cause), deploy=deploy or DeployInputs())


def leftovers(downloads: Path) -> list[Path]:
    return list(downloads.iterdir()) if downloads.exists() else []


# --- model store ---------------------------------------------------------------------------------

async def test_an_http_artifact_installs_with_its_bytes_its_name_and_the_approved_digest(
        model_store, registry, downloads, tmp_path):
    uri, sha = registry.publish("fraud/fraud-1.4.0.onnx", WEIGHTS)
    location = await model_store.prepare(release(uri, sha), {"artifact_sha256": sha})
    version = tmp_path / "store" / "fraud-detector" / "1.4.0"
    assert location == str(version.resolve())
    assert sorted(p.name for p in version.iterdir()) == ["fraud-1.4.0.onnx", store_files.MANIFEST]
    assert hashlib.sha256((version / "fraud-1.4.0.onnx").read_bytes()).hexdigest() == sha
    assert json.loads((version / store_files.MANIFEST).read_text())["artifact_sha256"] == sha
    assert registry.requests == [PREFIX + "fraud/fraud-1.4.0.onnx"]
    assert leftovers(downloads) == []  # the download was deleted once copied


async def test_an_http_artifact_installed_again_is_idempotent(model_store, registry, downloads):
    uri, sha = registry.publish("m.onnx", WEIGHTS)
    first = await model_store.prepare(release(uri, sha), {"artifact_sha256": sha})
    assert await model_store.prepare(release(uri, sha), {"artifact_sha256": sha}) == first
    assert leftovers(downloads) == []


async def test_a_changed_http_artifact_fails_saying_why_and_writes_nothing(model_store, registry, downloads, tmp_path):
    uri, approved = registry.publish("m.onnx", WEIGHTS)
    registry.publish("m.onnx", WEIGHTS + b"tampered")  # replaced after the validator checked it
    with pytest.raises(TargetError, match=f"approved digest is {approved}: the artifact changed") as caught:
        await model_store.prepare(release(uri, approved), {"artifact_sha256": approved})
    assert not caught.value.transient
    assert not (tmp_path / "store" / "fraud-detector").exists()
    assert not any((tmp_path / "store" / store_files.STAGING).glob("*"))
    assert leftovers(downloads) == []
    assert len(registry.requests) == 1  # refused at once, not retried


async def test_a_url_outside_the_prefixes_is_refused_without_a_request(model_store, registry, downloads, tmp_path):
    registry.files["/elsewhere/m.onnx"] = WEIGHTS
    for uri in (f"http://127.0.0.1:{registry.server_port}/elsewhere/m.onnx",
                f"http://127.0.0.1:{registry.server_port}/registry/../elsewhere/m.onnx",
                f"http://localhost:{registry.server_port}/registry/m.onnx"):
        with pytest.raises(TargetError, match="not under an allowed URL prefix"):
            await model_store.prepare(release(uri, hashlib.sha256(WEIGHTS).hexdigest()), {})
    assert registry.requests == []
    assert not (tmp_path / "store").exists() and leftovers(downloads) == []


async def test_http_is_refused_when_no_prefix_is_configured(tmp_path, registry):
    source = ArtifactSource(roots=(tmp_path,), workdir=tmp_path / "downloads")
    uri, sha = registry.publish("m.onnx", WEIGHTS)
    with pytest.raises(TargetError, match=r"\(none configured\)"):
        await ModelStore(tmp_path / "store", deps(tmp_path, source, RetryPolicy())).prepare(release(uri, sha), {})
    assert registry.requests == []


async def test_a_missing_http_artifact_fails_at_once(model_store, registry):
    with pytest.raises(TargetError, match="answered 404") as caught:
        await model_store.prepare(release(registry.prefix + "gone.onnx", f.SHA), {})
    assert not caught.value.transient and len(registry.requests) == 1


async def test_a_registry_that_does_not_answer_is_retried_then_fails(tmp_path, downloads):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix = f"http://127.0.0.1:{port}/registry/"
    source = ArtifactSource(roots=(), url_prefixes=(prefix,), timeout=2.0, workdir=downloads)
    store = ModelStore(tmp_path / "store", deps(tmp_path, source, RetryPolicy(attempts=2, backoff=0.0)))
    with pytest.raises(TargetError, match="gave up after 2 tries"):
        await store.prepare(release(prefix + "m.onnx", f.SHA), {})
    assert leftovers(downloads) == []


async def test_a_file_artifact_still_installs_under_its_own_name(model_store, tmp_path, downloads):
    path = tmp_path / "artifacts" / "fraud-1.4.0.onnx"
    path.write_bytes(WEIGHTS)
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    location = Path(await model_store.prepare(release(path.as_uri(), sha), {"artifact_sha256": sha}))
    assert (location / "fraud-1.4.0.onnx").read_bytes() == WEIGHTS
    assert path.read_bytes() == WEIGHTS and not downloads.exists()  # read in place, never deleted


async def test_a_changed_file_artifact_fails_before_anything_is_staged(model_store, tmp_path):
    path = tmp_path / "artifacts" / "m.onnx"
    path.write_bytes(WEIGHTS + b"changed")
    with pytest.raises(TargetError, match="the artifact changed since it was checked"):
        await model_store.prepare(release(path.as_uri(), hashlib.sha256(WEIGHTS).hexdigest()), {})
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("path", "name"), [
    ("/registry/fraud-1.4.0.onnx", "fraud-1.4.0.onnx"),
    ("/registry/model%2Bv2.tar.gz", "model+v2.tar.gz"),
    ("/registry/a/", "model"),
    ("/registry/my%20model.onnx", "model.onnx"),
    ("/registry/.hidden", "model"),
    ("/registry/mod%C3%A8le.pt", "model.pt"),
    ("/registry/manifest.json", "model.json"),
    ("/registry/x" + "a" * 200 + ".bin", "model.bin"),
    ("/registry/weights.we%20ird", "model"),
])
def test_a_downloaded_artifact_is_named_after_a_safe_last_segment(path, name):
    assert store_files.artifact_name(f"https://models.internal{path}?token=x", Path("/tmp/.fetch-1.part")) == name


def test_a_file_artifact_keeps_its_name_unless_it_is_the_manifests():
    assert store_files.artifact_name("file:///a/b/m.onnx", Path("/a/b/m.onnx")) == "m.onnx"
    assert store_files.artifact_name("file:///a/manifest.json", Path("/a/manifest.json")) == "model.json"


@pytest.mark.parametrize("name", ["../x", "a/b", "..", store_files.MANIFEST])
def test_install_refuses_a_name_that_is_not_a_single_safe_file_name(tmp_path, name):
    src = tmp_path / "m.bin"
    src.write_bytes(b"x")
    with pytest.raises(store_files.ArtifactError, match="not a single safe file name"):
        store_files.install(tmp_path / "store", f.candidate(), src, {}, name)
    assert not (tmp_path / "store").exists()


# --- webhook -------------------------------------------------------------------------------------

SECRET = b"hook-secret"


@pytest.fixture
def hook(tmp_path, source, monkeypatch):
    receiver = Receiver(SECRET).start()
    monkeypatch.setenv("HOOK", SECRET.decode())
    inputs = webhook.Inputs(url=receiver.url, secret_env="HOOK")
    target = webhook.build(inputs, deps(tmp_path, source, RetryPolicy(attempts=1), webhook_secret_envs=("HOOK",),
                                        webhook_timeout_seconds=5.0, webhook_allow_http_loopback=True))
    yield target, receiver
    receiver.stop()


async def test_webhook_verifies_an_http_artifact_then_hands_on_its_uri_and_digest(hook, registry, downloads):
    target, receiver = hook
    uri, sha = registry.publish("m.onnx", WEIGHTS)
    rel = release(uri, sha, deploy=webhook.Inputs(url=receiver.url, secret_env="HOOK"))
    assert await target.prepare(rel, {}) == receiver.url
    assert registry.requests == [PREFIX + "m.onnx"] and leftovers(downloads) == []
    await target.shift(rel, FULL, None, "key-1")
    [request] = receiver.accepted
    assert request.signed and (request.body["artifact_uri"], request.body["artifact_sha256"]) == (uri, sha)


async def test_webhook_refuses_an_http_artifact_whose_digest_changed(hook, registry, downloads):
    target, receiver = hook
    uri, approved = registry.publish("m.onnx", WEIGHTS)
    registry.publish("m.onnx", b"other weights")
    with pytest.raises(TargetError, match=f"approved digest is {approved}: the artifact changed"):
        await target.prepare(release(uri, approved), {})
    assert receiver.requests == [] and leftovers(downloads) == []


async def test_webhook_refuses_an_http_artifact_outside_the_prefixes_without_a_request(hook, registry):
    target, receiver = hook
    registry.files["/other/m.onnx"] = WEIGHTS
    uri = f"http://127.0.0.1:{registry.server_port}/other/m.onnx"
    with pytest.raises(TargetError, match="not under an allowed URL prefix"):
        await target.prepare(release(uri, hashlib.sha256(WEIGHTS).hexdigest()), {})
    assert registry.requests == [] and receiver.requests == []


# --- settings ------------------------------------------------------------------------------------

def test_settings_mirror_the_validators_names_and_defaults(monkeypatch):
    for name in ("ARTIFACT_URL_PREFIXES", "MAX_ARTIFACT_BYTES", "FETCH_TIMEOUT", "DOWNLOAD_DIR"):
        monkeypatch.delenv(f"DEPLOYER_{name}", raising=False)
    defaults = DeployerSettings()
    assert defaults.artifact_url_prefixes == ()
    assert (defaults.max_artifact_bytes, defaults.fetch_timeout) == (20 * 2**30, 600.0)
    assert defaults.download_dir == Path(".data/deployer/downloads")
    monkeypatch.setenv("DEPLOYER_ARTIFACT_URL_PREFIXES", '["https://models.internal/registry/"]')
    monkeypatch.setenv("DEPLOYER_MAX_ARTIFACT_BYTES", "1024")
    monkeypatch.setenv("DEPLOYER_FETCH_TIMEOUT", "30")
    monkeypatch.setenv("DEPLOYER_DOWNLOAD_DIR", "/var/tmp/dl")
    configured = DeployerSettings()
    assert configured.artifact_url_prefixes == ("https://models.internal/registry/",)
    assert (configured.max_artifact_bytes, configured.fetch_timeout) == (1024, 30.0)
    assert configured.download_dir == Path("/var/tmp/dl")
