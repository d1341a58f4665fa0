"""`ArtifactSource.fetch` reads only from allowed places, caps the size, leaves nothing behind when it
refuses, says whether trying again could help, and hashes in worker threads while the event loop
keeps serving."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.sources import SCHEMES, ArtifactError, ArtifactSource, Fetched, Scheme, http, local, policy

MiB = 1024 * 1024
CAP = 4 * MiB
MODEL = os.urandom(3 * MiB + 123)  # several chunks, the last one short
SECRET = b"outside the registry"
BLOCK = os.urandom(MiB)
LARGE_BLOCKS = 128  # /allowed/large.bin is BLOCK repeated: 128 MiB


class _Handler(BaseHTTPRequestHandler):
    """The routes a registry (honest or not) might answer with; every request is recorded."""

    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.headers["Host"], self.path))
        route = getattr(self, "route_" + self.path.strip("/").replace("/", "_").replace(".", "_").replace("-", "_"),
                        None)
        if route is None:
            self.send_error(404)
        else:
            route()

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            pass  # the client hung up, as it should when it refuses

    def log_message(self, *args) -> None:
        pass

    def _headers(self, status: int = 200, **headers: object) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), str(value))
        self.end_headers()

    def _send(self, body: bytes, **headers: object) -> None:
        self._headers(200, Content_Length=len(body), **headers)
        self.wfile.write(body)

    def route_allowed_model_bin(self) -> None:
        self._send(MODEL)

    def route_secret_bin(self) -> None:
        self._send(SECRET)

    def route_allowed_big_bin(self) -> None:  # honest: says it is over the cap
        self._headers(Content_Length=CAP + 1)
        self.wfile.write(b"\0" * (CAP + 1))

    def route_allowed_lying_bin(self) -> None:  # says 1000 bytes, sends far more than the cap
        self._headers(Content_Length=1000)
        self.wfile.write(b"\1" * (CAP + MiB))

    def route_allowed_endless_bin(self) -> None:  # no Content-Length: the body ends when the server stops
        self._headers()
        while not self.server.stop.is_set():
            self.wfile.write(BLOCK)

    def route_allowed_short_bin(self) -> None:  # hangs up before the promised bytes
        self._headers(Content_Length=1000)
        self.wfile.write(b"\2" * 10)

    def route_allowed_stall_bin(self) -> None:  # headers, then nothing
        self._headers(Content_Length=1000)
        self.wfile.flush()
        self.server.stop.wait(10)

    def route_allowed_drip_bin(self) -> None:  # a byte now and then: no single read times out
        self._headers()
        for _ in range(100):
            if self.server.stop.wait(0.05):
                return
            self.wfile.write(b"x")
            self.wfile.flush()

    def route_allowed_gzip_bin(self) -> None:
        self._send(gzip.compress(MODEL), Content_Encoding="gzip")

    def route_allowed_large_bin(self) -> None:
        self._headers(Content_Length=LARGE_BLOCKS * MiB)
        for _ in range(LARGE_BLOCKS):
            self.wfile.write(BLOCK)

    def route_allowed_redirect_out(self) -> None:  # same server, but a host that is not allowed
        self._headers(302, Location=f"http://localhost:{self.server.server_port}/allowed/model.bin")

    def route_allowed_redirect_up(self) -> None:
        self._headers(302, Location="../secret.bin")

    def route_allowed_redirect_in(self) -> None:
        self._headers(302, Location="/allowed/model.bin")

    def route_allowed_redirect_loop(self) -> None:
        self._headers(302, Location="/allowed/redirect-loop")


class _Server(ThreadingHTTPServer):
    requests: list[tuple[str, str]]
    stop: threading.Event


@pytest.fixture(scope="module")
def http_server():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests, server.stop = [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(http_server: _Server) -> _Server:
    http_server.requests.clear()
    return http_server


@pytest.fixture
def base(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_port}/allowed/"


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, ...]:
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / "model.onnx").write_bytes(MODEL)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return (root,)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def get(roots: tuple[Path, ...], base: str, workdir: Path):
    """`ArtifactSource.fetch` with this module's roots, prefix, cap, timeout and workdir unless told
    otherwise."""

    async def get(uri: str, **overrides) -> Fetched:
        options = dict(roots=roots, url_prefixes=(base,), max_bytes=CAP, timeout=5.0, workdir=workdir)
        return await ArtifactSource(**{**options, **overrides}).fetch(uri)

    return get


class _RecordingSha256:
    """hashlib.sha256 that remembers which threads fed it."""

    threads: set[int] = set()

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.threads.add(threading.get_ident())
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@pytest.fixture
def hashing_threads(monkeypatch) -> set[int]:
    _RecordingSha256.threads = set()
    for module in (local, http):
        monkeypatch.setattr(module, "hashlib", SimpleNamespace(sha256=_RecordingSha256))
    return _RecordingSha256.threads


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- file:// --------------------------------------------------------------------------------------


async def test_a_local_file_is_hashed_in_place(get, roots, hashing_threads):
    path = roots[0] / "model.onnx"
    fetched = await get(path.as_uri())
    assert fetched == Fetched(path.resolve(), sha(MODEL), len(MODEL), temporary=False)
    assert hashing_threads and threading.get_ident() not in hashing_threads
    fetched.cleanup()
    assert path.read_bytes() == MODEL  # cleanup never deletes the artifact itself


async def test_a_local_file_of_exactly_the_cap_is_accepted(get, roots):
    fetched = await get((roots[0] / "model.onnx").as_uri(), max_bytes=len(MODEL))
    assert fetched.size == len(MODEL)


async def test_a_local_file_over_the_cap_is_refused_naming_its_size_and_the_cap(get, roots):
    with pytest.raises(ArtifactError, match=rf"is {len(MODEL)} bytes, over the limit of {len(MODEL) - 1} bytes"):
        await get((roots[0] / "model.onnx").as_uri(), max_bytes=len(MODEL) - 1)


@pytest.mark.parametrize("where, message", [
    ("{root}/../secret.txt", "outside the allowed roots"),
    ("{root}/%2e%2e/secret.txt", "outside the allowed roots"),
    ("{root}/link.onnx", "outside the allowed roots"),
    ("{root}/absent.onnx", "no such file"),
    ("{root}", "is an allowed root itself"),
])
async def test_local_refusals_follow_resolve(get, roots, tmp_path, where, message):
    (roots[0] / "link.onnx").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ArtifactError, match=message):
        await get("file://" + where.format(root=roots[0]))


async def test_no_roots_configured_refuses_local_files(get, roots):
    with pytest.raises(ArtifactError, match=r"\(none configured\)"):
        await get((roots[0] / "model.onnx").as_uri(), roots=())


@pytest.mark.parametrize("uri", ["gs://bucket/m.onnx", "ftp://host/m.onnx", "/abs/m.onnx", "http://[::1/m"])
async def test_other_schemes_are_refused(get, uri, server):
    with pytest.raises(ArtifactError, match="not supported|not a valid URI"):
        await get(uri)
    assert server.requests == []


async def test_an_unsupported_scheme_is_refused_naming_the_supported_ones(get):
    with pytest.raises(ArtifactError, match=r"scheme 'gs' is not supported; use file://, http://, https:// or s3://$"):
        await get("gs://bucket/m.onnx")


async def test_a_scheme_added_to_the_registry_is_used_with_the_source_and_its_cap(get, monkeypatch, tmp_path):
    calls = []

    async def fetch_memory(uri: str, source: ArtifactSource, max_bytes: int) -> Fetched:
        calls.append((uri, source.workdir.is_dir(), max_bytes))
        return Fetched(source.workdir / "m", sha(b""), 0, temporary=True)

    monkeypatch.setitem(sys.modules, "tests_memory_source", SimpleNamespace(fetch=fetch_memory))
    monkeypatch.setitem(SCHEMES, "mem", Scheme("tests_memory_source", downloads=True))
    workdir = tmp_path / "mem-downloads"
    fetched = await get("MEM://bucket/m.onnx", workdir=workdir)
    assert calls == [("MEM://bucket/m.onnx", True, CAP)] and fetched.path == workdir / "m"
    with pytest.raises(ArtifactError, match=r"use file://, http://, https://, s3:// or mem://$"):
        await get("gs://bucket/m.onnx")


# --- http(s):// -----------------------------------------------------------------------------------


async def test_a_download_is_hashed_into_a_temporary_file_under_the_workdir(get, base, workdir, hashing_threads):
    fetched = await get(base + "model.bin")
    assert (fetched.sha256, fetched.size, fetched.temporary) == (sha(MODEL), len(MODEL), True)
    assert fetched.path.parent == workdir and fetched.path.read_bytes() == MODEL
    assert hashing_threads and threading.get_ident() not in hashing_threads
    fetched.cleanup()
    assert list(workdir.iterdir()) == []


async def test_the_url_requested_is_the_normalised_one(get, server, workdir):
    fetched = await get(f"HTTP://127.0.0.1:{server.server_port}/allowed/./sub/../model.bin#fragment")
    assert fetched.sha256 == sha(MODEL)
    assert [path for _, path in server.requests] == ["/allowed/model.bin"]
    fetched.cleanup()


async def test_a_redirect_within_the_prefix_is_followed(get, base, server):
    fetched = await get(base + "redirect-in")
    assert fetched.sha256 == sha(MODEL)
    assert [path for _, path in server.requests] == ["/allowed/redirect-in", "/allowed/model.bin"]
    fetched.cleanup()


@pytest.mark.parametrize("name, message, transient", [
    ("big.bin", rf"is {CAP + 1} bytes, over the limit of {CAP} bytes", False),
    ("endless.bin", rf"is more than {CAP} bytes, over the limit of {CAP} bytes", False),
    ("missing.bin", "answered 404 Not Found", False),
    ("short.bin", "the download failed .*RemoteProtocolError", True),
    ("stall.bin", r"within 0\.5 s", True),
    ("drip.bin", r"did not finish within 0.5 s", True),
    ("gzip.bin", "Content-Encoding 'gzip'", False),
    ("redirect-out", r"redirected to 'http://localhost:\d+/allowed/model.bin' is not under an allowed URL prefix",
     False),
    ("redirect-up", r"redirected to 'http://127.0.0.1:\d+/secret.bin' is not under an allowed URL prefix", False),
    ("redirect-loop", "more than 5 redirects", False),
])
async def test_a_refused_download_leaves_nothing_in_the_workdir(get, base, server, workdir, name, message, transient):
    with pytest.raises(ArtifactError, match=message) as refused:
        await get(base + name, timeout=0.5)
    assert base + name in str(refused.value)  # the message names the URI
    assert refused.value.transient is transient  # only a network failure or a timeout is worth a retry
    assert list(workdir.iterdir()) == []
    assert ("/allowed/model.bin" not in [path for _, path in server.requests]
            and "/secret.bin" not in [path for _, path in server.requests])  # redirects not followed


async def test_a_content_length_under_the_cap_bounds_what_is_read(get, base, workdir):
    """HTTP framing ends the body at the stated length: the extra bytes are never read."""
    fetched = await get(base + "lying.bin")
    assert (fetched.size, fetched.sha256) == (1000, sha(b"\1" * 1000))
    fetched.cleanup()


async def test_a_failing_write_is_named_and_leaves_nothing_in_the_workdir(get, base, workdir, monkeypatch):
    class DiskFull(_RecordingSha256):
        def update(self, data: bytes) -> None:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(http, "hashlib", SimpleNamespace(sha256=DiskFull))
    with pytest.raises(ArtifactError, match=r"cannot write the download .*\(No space left on device\)"):
        await get(base + "model.bin")
    assert list(workdir.iterdir()) == []


async def test_a_workdir_that_does_not_exist_is_created_for_a_download_only(get, base, roots, tmp_path):
    workdir = tmp_path / "new" / "downloads"
    (await get((roots[0] / "model.onnx").as_uri(), workdir=workdir)).cleanup()
    assert not workdir.exists()  # read in place: nothing to download
    fetched = await get(base + "model.bin", workdir=workdir)
    assert fetched.path.parent == workdir and fetched.sha256 == sha(MODEL)
    fetched.cleanup()


async def test_a_workdir_that_cannot_be_created_is_named(get, base, tmp_path, server):
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(ArtifactError, match="workdir .*absent.* is not writable") as refused:
        await get(base + "model.bin", workdir=tmp_path / "a-file" / "absent")
    assert server.requests == [] and not refused.value.transient


async def test_the_http_source_names_a_workdir_that_does_not_exist(base, roots, tmp_path, server):
    source = ArtifactSource(roots=roots, url_prefixes=(base,), workdir=tmp_path / "absent")
    with pytest.raises(ArtifactError, match="workdir .*absent.* is not writable"):
        await http.fetch(base + "model.bin", source, CAP)  # called directly: nothing created it
    assert server.requests == []


async def test_a_registry_refusing_connections_is_worth_a_retry(get):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        prefix = f"http://127.0.0.1:{probe.getsockname()[1]}/allowed/"
    with pytest.raises(ArtifactError, match="the download failed .*ConnectError") as refused:
        await get(prefix + "model.bin", url_prefixes=(prefix,))
    assert refused.value.transient


async def test_a_refused_local_file_is_not_worth_a_retry(get, tmp_path):
    with pytest.raises(ArtifactError, match="outside the allowed roots") as refused:
        await get((tmp_path / "secret.txt").as_uri())
    assert not refused.value.transient


async def test_a_cancelled_download_leaves_nothing_in_the_workdir(get, base, workdir):
    task = asyncio.create_task(get(base + "drip.bin"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("template", [
    "{base}../secret.bin",
    "{base}%2e%2e/secret.bin",
    "{base}%2E%2e%2Fsecret.bin",
    "{base}..%2fsecret.bin",
    "{base}%252e%252e/secret.bin",
    "{base}..\\secret.bin",
    "{base}\t../../secret.bin",
    "http://127.0.0.1:{port}/allowed-evil/model.bin",
    "http://127.0.0.1:{port}/allowed",
    "http://localhost:{port}/allowed/model.bin",
    "http://user:hunter2@127.0.0.1:{port}/allowed/model.bin",
    "http://127.0.0.1:{port}@localhost:{port}/allowed/model.bin",
    "https://127.0.0.1:{port}/allowed/model.bin",
])
async def test_urls_escaping_the_prefix_are_refused_before_any_request(get, base, server, template):
    uri = template.format(base=base, port=server.server_port)
    with pytest.raises(ArtifactError, match="is refused|is not under an allowed URL prefix") as refused:
        await get(uri)
    assert "hunter2" not in str(refused.value)
    assert server.requests == []


@pytest.mark.parametrize("uri", [
    "https://models.internal.evil.com/registry/m.onnx",
    "https://models.internal@evil.com/registry/m.onnx",
    "https://evil.com@models.internal/registry/m.onnx",
    "https://models.internal%2eevil.com/registry/m.onnx",
    "https://models.internal\\@evil.com/registry/m.onnx",
    "https://models.internal:8443/registry/m.onnx",
    "http://models.internal/registry/m.onnx",
    "https://models.internal/registry-evil/m.onnx",
    "https://models.internal/registry/../admin/m.onnx",
    "https://models.internal/registry/%2e%2e/admin/m.onnx",
    "https://models.internal/registry/%2e%2e%2fadmin/m.onnx",
    "https://models.internal/registry/%C0%AE%C0%AE/admin/m.onnx",
    "https://models.internal/../registry/m.onnx",
])
async def test_prefix_confusion_is_refused_without_touching_the_network(get, monkeypatch, uri):
    monkeypatch.setattr(http.httpx, "AsyncClient", None)  # any request would fail differently
    with pytest.raises(ArtifactError, match="is refused|is not under an allowed URL prefix"):
        await get(uri, url_prefixes=("https://models.internal/registry/",))


@pytest.mark.parametrize("prefix", ["https://models.internal/registry/", "https://MODELS.internal:443/registry"])
def test_a_url_under_the_prefix_passes_the_check(prefix):
    for uri in ["https://models.internal/registry/m.onnx", "HTTPS://Models.Internal:443/registry/a/../m.onnx",
                "https://models.internal/registry/%6D%2Eonnx"]:
        assert policy.checked_url(uri, uri, (prefix,)).text() == "https://models.internal/registry/m.onnx"


def test_no_prefixes_configured_refuses_every_url():
    with pytest.raises(ArtifactError, match=r"\(none configured\)"):
        policy.checked_url("https://models.internal/m", "https://models.internal/m", ())


# --- the event loop keeps serving ------------------------------------------------------------------


async def _ticks_while(work) -> tuple[int, float, object]:
    """How often a 10 ms ticker ran while `work` was awaited, and how long that took."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        result = await work
    finally:
        task.cancel()
    return ticks, loop.time() - start, result


async def test_the_loop_keeps_ticking_while_a_large_download_is_hashed(get, base, hashing_threads):
    ticks, elapsed, fetched = await _ticks_while(get(base + "large.bin", max_bytes=LARGE_BLOCKS * MiB, timeout=60))
    fetched.cleanup()
    assert fetched.size == LARGE_BLOCKS * MiB
    assert threading.get_ident() not in hashing_threads
    # A loop blocked while hashing would tick about once per chunk; a free one ticks every 10 ms.
    assert ticks >= 5 and ticks >= elapsed / 0.01 / 3, (ticks, elapsed)


async def test_the_loop_keeps_ticking_while_a_large_local_file_is_hashed(get, roots, hashing_threads):
    path = roots[0] / "large.bin"
    with open(path, "wb") as f:
        for _ in range(LARGE_BLOCKS):
            f.write(BLOCK)
    ticks, elapsed, fetched = await _ticks_while(get(path.as_uri(), max_bytes=LARGE_BLOCKS * MiB))
    assert fetched.size == LARGE_BLOCKS * MiB
    assert threading.get_ident() not in hashing_threads
    # Hashed on the loop, the ticker could not run at all until the very end.
    assert ticks >= 3 and ticks >= elapsed / 0.01 / 3, (ticks, elapsed)
