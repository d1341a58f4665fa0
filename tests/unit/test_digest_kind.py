"""A digest names one kind of artifact. A folder's digest is the sha256 of its listing, so a single
file whose bytes are that listing has the folder's digest: checked as a harmless text file, then
swapped for the folder (a pickle that runs code inside), it would pass the deployer's digest check
unscanned. Every source therefore refuses a single file that reads as a listing, and so does
`signoff verify`; a listing naming a path that is also a folder of another is refused too."""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.deployer.targets.base import Deps, RetryPolicy, TargetError
from services.validator import run_checks
from shared.attestation import AttestationError
from shared.sources import ArtifactError, ArtifactSource, tree
from signoff import verify_files
from tests.unit import factories as f


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


EVIL = pickle.dumps(_Evil())
LISTING = tree.listing([tree.TreeFile("model.pkl", hashlib.sha256(EVIL).hexdigest(), len(EVIL))])
D = hashlib.sha256(LISTING).hexdigest()  # the file's sha256, and the folder's tree digest
STEP = SimpleNamespace(inputs=SimpleNamespace(security=SimpleNamespace(allowed_globals=[])))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "team").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def source(root: Path, tmp_path: Path) -> ArtifactSource:
    return ArtifactSource(roots=(root,), workdir=tmp_path / "downloads")


def test_the_confusion_exists_a_listing_file_and_its_folder_share_the_digest():
    """Why the refusal: nothing in the two digests tells them apart."""
    assert tree.digest([tree.TreeFile("model.pkl", hashlib.sha256(EVIL).hexdigest(), len(EVIL))]) == D


async def test_the_validator_fails_a_file_that_reads_as_a_listing_and_scans_nothing(root, source):
    art = root / "team" / "model"
    art.write_bytes(LISTING)
    results = await run_checks._artifact(art.as_uri(), D, STEP, source)  # type: ignore[arg-type]
    assert [(r.name, r.passed) for r in results] == [("integrity", False)]
    assert "reads as a folder's tree listing" in results[0].message
    with pytest.raises(ArtifactError, match="reads as a folder's tree listing"):
        await source.digest(art.as_uri())  # signoff digest, submit --mlflow, the MLflow target
    # Swapped for the folder it lists: its digest is the same, but nothing approved it.
    art.unlink()
    art.mkdir()
    (art / "model.pkl").write_bytes(EVIL)
    assert (await source.digest(art.as_uri())).sha256 == D
    results = await run_checks._artifact(art.as_uri(), D, STEP, source)  # type: ignore[arg-type]
    assert [(r.name, r.passed) for r in results] == [("integrity", True), ("security", False)]


async def test_the_deployer_refuses_a_listing_file_where_a_folder_was_approved(root, source):
    art = root / "team" / "model"
    art.write_bytes(LISTING)
    deps = Deps(settings=None, source=source, deliveries=None, policy=RetryPolicy(1, 0, 0))  # type: ignore[arg-type]
    candidate = f.candidate(artifact_uri=art.as_uri(), artifact_sha256=D)
    with pytest.raises(TargetError, match="reads as a folder's tree listing"):
        await deps.verified(candidate)


@pytest.mark.parametrize("data", [
    b"onnx weights",
    b"a" * 64 + b" model.pkl\n",  # one space: no listing
    b"A" * 64 + b"  model.pkl\n",  # upper case: sha256sum's hex is lower case
    b"\n" + LISTING,  # anything before the first digest
    LISTING[:65],  # too short to be a listing
])
async def test_a_file_that_is_no_listing_is_accepted(root, source, data):
    art = root / "team" / "model.bin"
    art.write_bytes(data)
    fetched = await source.fetch(art.as_uri())
    assert fetched.sha256 == hashlib.sha256(data).hexdigest() and not fetched.folder


def test_the_head_is_gathered_across_small_chunks():
    head = tree.FileHead()
    for i in range(0, len(LISTING), 7):
        head.feed(LISTING[i:i + 7])
    assert head.head == LISTING[:tree.HEAD_BYTES]
    with pytest.raises(ArtifactError, match="tree listing"):
        head.check("artifact_uri 'x'")


class _Listing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(LISTING)))
        self.end_headers()
        self.wfile.write(LISTING)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Listing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/models/"
    server.shutdown()
    server.server_close()


async def test_a_download_that_reads_as_a_listing_is_refused_and_deleted(registry, tmp_path):
    source = ArtifactSource(roots=(), url_prefixes=(registry,), workdir=tmp_path / "downloads")
    with pytest.raises(ArtifactError, match="reads as a folder's tree listing"):
        await source.fetch(registry + "model")
    assert list((tmp_path / "downloads").iterdir()) == []


def test_verify_refuses_a_file_that_reads_as_a_listing(tmp_path):
    """A folder release's files replaced by its listing: harmless text, but no release is such a file."""
    art = tmp_path / "model"
    art.write_bytes(LISTING)
    with pytest.raises(AttestationError, match="reads as a folder's tree listing"):
        verify_files.check_digest(art, D)


@pytest.mark.parametrize("paths", [("x", "x/y"), ("a/b", "a/b/c/d", "a/c"), ("x", "x-a", "x/y")])
def test_a_listing_with_a_file_that_is_also_a_folder_is_refused(paths):
    files = [tree.TreeFile(p, "0" * 64, 1) for p in paths]
    with pytest.raises(ArtifactError, match="holds both a file"):
        tree.listing(files)


def test_names_that_share_a_prefix_without_a_slash_are_fine():
    assert tree.listing([tree.TreeFile(p, "0" * 64, 1) for p in ("x", "x-a", "xy/z", "x.d/e")])
