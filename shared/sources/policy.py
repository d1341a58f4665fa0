"""Where artifacts may come from, and how big they may be: the allow-lists, with no I/O but looking
at the local filesystem (to resolve `..` and symbolic links).

`file://` URIs must resolve under an allowed root; `http(s)://` URLs are normalised the way a
server routes them and must lie under an allowed URL prefix, by whole path segments; `s3://` URIs
must lie under an allowed bucket prefix, by whole key segments, with no empty, `.` or `..` segment. Every message
shows a URI without its user info, so a password never lands in an event or a log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse, urlsplit

from shared.sources.base import ArtifactError

DEFAULT_PORTS = {"http": 80, "https": 443}
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"  # RFC 3986 pchar, left as is when a path is re-encoded


def scheme_of(uri: str) -> str:
    """The URI's scheme, lower-cased ('' for a bare path)."""
    try:
        return urlsplit(uri).scheme.lower()
    except ValueError as exc:
        raise ArtifactError(f"artifact_uri {uri!r} is not a valid URI ({exc}); fix the URI") from None


# --- file:// ----------------------------------------------------------------------------------


def resolve(uri: str, allowed_roots: tuple[Path, ...]) -> Path:
    """The local path of a `file://` artifact (a file, or a folder below a root: a folder
    artifact), refusing anything outside the allowed roots (after resolving `..` and symbolic links)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ArtifactError(f"artifact_uri {uri!r}: only file:// URIs are supported here")
    if parsed.netloc not in ("", "localhost"):
        raise ArtifactError(f"artifact_uri {uri!r}: file URIs must be local (file:///path)")
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise ArtifactError(f"artifact_uri {uri!r}: the path must be absolute")
    real = Path(os.path.realpath(path))
    for root in allowed_roots:
        if real == Path(os.path.realpath(root)):
            raise ArtifactError(f"artifact_uri {uri!r} is an allowed root itself; point it at the artifact's "
                                "file or folder below it")
        if real.is_relative_to(Path(os.path.realpath(root))):
            break
    else:
        roots = ", ".join(str(r) for r in allowed_roots) or "(none configured)"
        raise ArtifactError(f"artifact_uri {uri!r} is outside the allowed roots: {roots}")
    if not (real.is_file() or real.is_dir()):
        raise ArtifactError(f"artifact_uri {uri!r}: no such file or folder")
    return real


def check_links(uri: str, links: int, allowed: bool) -> None:
    """Refuse a file with more than one name. A hard link is the file itself under another name:
    a link inside an allowed root to a file outside it resolves inside (no `..`, no symbolic link
    to see), so the roots would be no boundary. Neither path nor inode tells which name is the
    original, so the rule is on the link count, checked on the opened file; a store that keeps
    artifacts hard-linked (deduplication, snapshots) allows them explicitly."""
    if links > 1 and not allowed:
        raise ArtifactError(
            f"artifact_uri {uri!r} has {links} hard links: a hard link can bring a file from outside the "
            "allowed roots inside them, so only files with a single link are read; copy the artifact into "
            "the root (cp, not ln), or set <SERVICE>_ARTIFACT_ALLOW_HARD_LINKS=true if your store links "
            "files on purpose")


# --- http(s):// -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Url:
    """An http(s) URL reduced to what a server routes on: `..` resolved, segments decoded once."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]
    query: str

    def is_under(self, prefix: Url) -> bool:
        """Whole path segments: the prefix `/registry` (or `/registry/`) covers `/registry/m.onnx`
        but not `/registry-evil/m.onnx`."""
        base = prefix.segments[:-1] if prefix.segments[-1:] == ("",) else prefix.segments
        return ((self.scheme, self.host, self.port) == (prefix.scheme, prefix.host, prefix.port)
                and self.segments[:len(base)] == base and len(self.segments) > len(base))

    def text(self) -> str:
        """The URL actually requested: exactly the one that was checked."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        path = "/".join(quote(s, safe=_SEGMENT_SAFE) for s in self.segments)
        return f"{self.scheme}://{host}{port}/{path}" + (f"?{self.query}" if self.query else "")


def parse_url(url: str) -> Url:
    """Raises ValueError saying what is wrong with the URL."""
    if any(not " " < c < "\x7f" or c == "\\" for c in url):
        raise ValueError("it contains spaces, control characters, backslashes or non-ASCII characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("only http:// and https:// can be downloaded")
    if "@" in parts.netloc:
        raise ValueError("user info (user@host) in URLs is not accepted")
    host = parts.hostname or ""
    if not host or "%" in host:
        raise ValueError("it has no valid host")
    port = DEFAULT_PORTS[scheme] if parts.port is None else parts.port
    segments: list[str] = []
    for raw in parts.path.split("/")[1:] or [""]:
        segment = unquote(raw, errors="strict")
        if any(c in "/\\%\x7f" or c < " " for c in segment):
            raise ValueError("its path encodes '/', '\\', '%' or control characters")
        if segment == "..":
            if not segments:
                raise ValueError("its path climbs above the root with '..'")
            segments.pop()
        elif segment != ".":
            segments.append(segment)
    return Url(scheme, host, port, tuple(segments) or ("",), parts.query)


def checked_url(uri: str, url: str, prefixes: tuple[str, ...]) -> Url:
    """The parsed `url` (the artifact URI, or where it redirected) if it is under an allowed prefix."""
    what = "artifact_uri" if url == uri else f"artifact_uri {shown(uri)!r} redirected to"
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise ArtifactError(f"{what} {shown(url)!r} is refused: {exc}; "
                            "use a plain URL under an allowed prefix") from None
    if not any(parsed.is_under(_prefix(p)) for p in prefixes):
        allowed = ", ".join(prefixes) or "(none configured)"
        raise ArtifactError(f"{what} {shown(url)!r} is not under an allowed URL prefix ({allowed}); "
                            "publish the artifact there or add its location to the allowed prefixes")
    return parsed


def _prefix(prefix: str) -> Url:
    try:
        parsed = parse_url(prefix)
    except ValueError as exc:
        raise ArtifactError(f"allowed URL prefix {shown(prefix)!r} is invalid: {exc}; fix the configuration") from None
    if parsed.query:
        raise ArtifactError(f"allowed URL prefix {prefix!r} has a query; fix the configuration")
    return parsed


# --- s3:// -------------------------------------------------------------------------------------

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket naming rules, in short


@dataclass(frozen=True)
class S3Uri:
    """`s3://bucket/key` (one object) or `s3://bucket/prefix/` (a folder: every object under it)."""

    bucket: str
    key: str  # a folder's ends with '/'

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.key.split("/") if s)

    @property
    def is_folder(self) -> bool:
        return self.key.endswith("/")

    def is_under(self, prefix: S3Uri) -> bool:
        """Whole key segments: `s3://models/teams/` covers `s3://models/teams/a/m.onnx`, not
        `s3://models/teams-evil/m.onnx`; `s3://models/` covers the whole bucket."""
        base = prefix.segments
        return (self.bucket == prefix.bucket and self.segments[:len(base)] == base
                and len(self.segments) > len(base))

    def text(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3(uri: str) -> S3Uri:
    """Raises ValueError saying what is wrong with the S3 URI."""
    if not uri.startswith("s3://"):
        raise ValueError("it does not start with s3://")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError("the bucket is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
    if any(c < " " or c == "\x7f" or c == "\\" for c in key) or "?" in key or "#" in key:
        raise ValueError("the key holds control characters, a backslash, '?' or '#'")
    body = key[:-1] if key.endswith("/") else key
    if body and any(s in ("", ".", "..") for s in body.split("/")):
        raise ValueError("the key has an empty, '.' or '..' segment")
    if len(key.encode("utf-8", "surrogatepass")) > 1024:
        raise ValueError("the key is longer than 1024 bytes")
    return S3Uri(bucket, key)


def checked_s3(uri: str, prefixes: tuple[str, ...]) -> S3Uri:
    """The parsed `uri` if it is an object or folder under an allowed bucket prefix."""
    try:
        parsed = parse_s3(uri)
    except ValueError as exc:
        raise ArtifactError(f"artifact_uri {uri!r} is refused: {exc}; use s3://bucket/key or "
                            "s3://bucket/prefix/ under an allowed prefix") from None
    if not parsed.key:
        raise ArtifactError(f"artifact_uri {uri!r} names a whole bucket; name the object or the "
                            "model's folder (s3://bucket/prefix/)")
    if not any(parsed.is_under(_s3_prefix(p)) for p in prefixes):
        allowed = ", ".join(prefixes) or "(none configured)"
        raise ArtifactError(f"artifact_uri {uri!r} is not under an allowed S3 prefix ({allowed}); "
                            "store the artifact there or add its location to <SERVICE>_ARTIFACT_S3_PREFIXES")
    return parsed


def _s3_prefix(prefix: str) -> S3Uri:
    try:
        return parse_s3(prefix)
    except ValueError as exc:
        raise ArtifactError(f"allowed S3 prefix {prefix!r} is invalid: {exc}; fix the configuration") from None


# --- what every source says -------------------------------------------------------------------


def shown(uri: str) -> str:
    """The URI without user info, so a password never lands in an event or a log."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def too_big(uri: str, size: str, max_bytes: int) -> ArtifactError:
    """The refusal of an artifact over the size limit; `size` is what is known of its size."""
    return ArtifactError(f"artifact_uri {shown(uri)!r} is {size}, over the limit of {max_bytes} bytes; "
                         "publish a smaller artifact or raise the configured size limit")
