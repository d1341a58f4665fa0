"""Security scan of a model artifact by static analysis: nothing in it is loaded, imported or unpickled.

Pickle streams (raw pickle, joblib, PyTorch zip checkpoints, pickles in any zip, object .npy arrays)
are disassembled with `pickletools.genops` and picklescan, which only parse opcodes. Every global a
stream imports must be on the workflow's allowlist; picklescan's "innocuous" rating never makes a
global acceptable, because blocklists are bypassed by the next gadget nobody listed. A stream that
cannot be parsed to its end fails closed: unpickling executes opcodes as it reads them, so a stream
broken after a REDUCE has already run its payload.
"""

from __future__ import annotations

import json
import logging
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from numpy.lib import format as npy_format
from picklescan.scanner import SafetyLevel, scan_pickle_bytes

from services.validator.checks import is_plain, plain_name
from shared.events import CheckResult

# picklescan logs a warning for every file that is not a pickle; our result already says what it is.
logging.getLogger("picklescan").setLevel(logging.ERROR)
# Decoding a protocol-0 STRING of random bytes warns of its escapes: the parse, not the artifact, is told.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="pickletools")

# Names that only pickles carry. Generic names (.bin, .pt, .ckpt, .dat) hold raw tensors as often
# as pickles: for them the content decides (pickle magic, a zip, or a stream that parses as a pickle).
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})
PICKLE_MAGIC = tuple(b"\x80" + bytes([p]) for p in range(6))  # PROTO opcode, protocols 0-5
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
NPY_MAGIC = b"\x93NUMPY"
MAX_SAFETENSORS_HEADER = 100_000_000  # the limit the safetensors reference implementation enforces
MAX_NPY_HEADER = 1 << 20
# picklescan keeps every opcode of a stream in memory; larger streams are refused, not half-read.
MAX_PICKLE_BYTES = 1 << 30
EXTENSION = "copyreg.extension_"  # how an EXT1/2/4 code is named among a stream's imports
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*$")


@dataclass
class _Stream:
    """What one pickle stream imports, and why it could not be read to its end, if it could not."""

    where: str
    imports: set[str] = field(default_factory=set)
    dangerous: set[str] = field(default_factory=set)
    error: str | None = None
    clean: bool = False  # every byte parsed, as one pickle or several, with no error
    reaches: bool = False  # a loader gets to an import before it fails: _Loader

    def looks_like_pickle(self) -> bool:
        """Whether content with no pickle magic and no pickle name is taken as one: a loader would
        get to an import, or it parses cleanly to its end, or it names an import
        (picklescan's reading). Random bytes are none of these (tests/unit/test_security.py): a lone
        STOP, a constant then junk, an EXT code (the registry is empty unless code fills it) or a
        STACK_GLOBAL with no two strings under it stops a loader before anything is imported."""
        return self.reaches or self.clean or any(
            all(_IDENTIFIER.match(p) and p != "unknown" for p in g.rsplit(".", 1))
            for g in self.imports if not g.startswith(EXTENSION))


class _Loader:
    """What an unpickler's stack would hold, by kind (pickletools' stack objects), as it runs one
    pickle's opcodes: enough to tell where it would fail (a pop below the stack or its mark, a
    memo slot never filled, a STACK_GLOBAL whose operands cannot be strings) and whether it gets to
    an import (GLOBAL, INST, STACK_GLOBAL) first: nothing is called without one. A persistent id
    calls the loader's own persistent_load (pickle.load has none and fails there; torch's makes
    storages), never code the file names. Generous where unsure: an object of unknown kind may be
    a string."""

    MAY_BE_TEXT = frozenset({"str", "bytes_or_str", "any"})

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.memo: dict[object, str] = {}
        self.failed = False

    def step(self, op: pickletools.OpcodeInfo, arg: object) -> bool:
        """Run one opcode; True when the loader gets to an import with it."""
        if self.failed:
            return False
        before = [o.name for o in op.stack_before]
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not self._above_mark():
                return self._fail()
            self.memo[len(self.memo) if op.name == "MEMOIZE" else arg] = self.stack[-1]
            return False
        if op.name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                return self._fail()
            self.stack.append(self.memo[arg])
            return False
        if op.name == "POP" and self.stack and self.stack[-1] == "mark":
            self.stack.pop()  # the unpickler's POP takes a mark off the top too
            return False
        if op.name == "DUP":
            if not self._above_mark():
                return self._fail()
            self.stack.append(self.stack[-1])
            return False
        popped = self._pop(before)
        if popped is None:
            return self._fail()
        if op.name == "STACK_GLOBAL" and not all(kind in self.MAY_BE_TEXT for kind in popped):
            return self._fail()  # "STACK_GLOBAL requires str": nothing is imported
        self.stack.extend(o.name for o in op.stack_after)
        return op.name in ("GLOBAL", "INST", "STACK_GLOBAL")

    def _pop(self, before: list[str]) -> list[str] | None:
        """Take what the opcode consumes; None where the loader would fail."""
        if "stackslice" in before:  # everything above the last mark, then the mark, then what lies under it
            if "mark" not in self.stack:
                return None
            at = len(self.stack) - 1 - self.stack[::-1].index("mark")
            sliced, self.stack = self.stack[at + 1:], self.stack[:at]
            inside = before.index("stackslice") - before.index("mark") - 1  # OBJ: its class is in the slice
            under = before.index("mark")
            if len(sliced) < inside or len(self._top_run()) < under:
                return None
            taken = self.stack[len(self.stack) - under:] if under else []
            del self.stack[len(self.stack) - under:]
            return taken + sliced
        if len(self._top_run()) < len(before):
            return None
        taken = self.stack[len(self.stack) - len(before):] if before else []
        del self.stack[len(self.stack) - len(before):]
        return taken

    def _top_run(self) -> list[str]:
        """The objects above the last mark: a pop goes no further."""
        return self.stack[len(self.stack) - self.stack[::-1].index("mark"):] if "mark" in self.stack else self.stack

    def _above_mark(self) -> bool:
        return bool(self._top_run())

    def _fail(self) -> bool:
        self.failed = True
        return False


def scan(path: Path, allowed_globals: Collection[str]) -> CheckResult:
    allowed = frozenset(allowed_globals)
    threshold = f"allowlist of {len(allowed)} globals"
    try:
        kind, streams, problem = _inspect(Path(path))
    except (OSError, EOFError, RuntimeError, NotImplementedError, ValueError, struct.error,
            zipfile.BadZipFile) as exc:
        return CheckResult(name="security", passed=False, measured="unreadable", threshold=threshold,
                           message=f"artifact cannot be verified, re-export it: {_unreadable(exc)}")
    if problem is not None:
        return CheckResult(name="security", passed=False, measured=kind, threshold=threshold, message=problem)
    if not streams:
        measured = kind if kind == "safetensors" else f"{kind}: no pickle content"
        return CheckResult(name="security", passed=True, measured=measured, threshold=threshold,
                           message="no pickle content" + (", header valid" if kind == "safetensors" else ""))
    imports = sorted(set().union(*(s.imports for s in streams)))
    measured = f"{kind}: {len(imports)} globals" + (f" in {len(streams)} pickles" if len(streams) > 1 else "")
    problems = [p for s in streams for p in _problems(s, allowed)]
    if problems:
        return CheckResult(name="security", passed=False, measured=measured, threshold=threshold,
                           message="; ".join(problems))
    return CheckResult(name="security", passed=True, measured=measured, threshold=threshold,
                       message=f"imports only allowed globals: {', '.join(imports) or 'none'}")


_UNREADABLE: dict[type[Exception], str] = {
    zipfile.BadZipFile: "not a valid zip archive", struct.error: "a header is truncated",
    EOFError: "it ends early", NotImplementedError: "it uses a compression method that cannot be read",
    RecursionError: "it is nested too deeply"}


def _unreadable(exc: Exception) -> str:
    """Why the artifact could not be read, in our words: the errors of zipfile and struct quote
    member names and bytes of the artifact, which a reviewer must not be shown."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _UNREADABLE.get(type(exc), f"it cannot be parsed ({type(exc).__name__})")


def _global(name: str) -> str:
    """A global a pickle imports, as a message shows it: `module.name` when both are Python
    identifiers; otherwise the pickle's own text is not repeated."""
    return name if all(_IDENTIFIER.match(p) for p in name.rsplit(".", 1)) and len(name) <= 200 else (
        f"a global whose name is not a Python identifier ({len(name)} characters)")


def _problems(stream: _Stream, allowed: frozenset[str]) -> list[str]:
    where = f"{stream.where}: " if stream.where else ""
    found = []
    for name in sorted(stream.imports):
        if name not in allowed:
            rated = " (picklescan rates it dangerous)" if name in stream.dangerous else ""
            found.append(f"{where}imports {_global(name)}, which is not in the allowlist{rated}")
        elif name in stream.dangerous:
            found.append(f"{where}imports {_global(name)}: allowed by the workflow but picklescan rates it dangerous")
    if stream.error is not None:
        hint = ("; joblib writes numpy arrays inline, which no static parser can skip: re-export as "
                "safetensors, ONNX or skops" if any(i.startswith("joblib.") for i in stream.imports) else "")
        found.append(f"{where}pickle cannot be verified, re-export it: {stream.error}{hint}")
    return found


def _inspect(path: Path) -> tuple[str, list[_Stream], str | None]:
    """(format, the pickle streams in it, why it fails regardless of its globals)."""
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(16)
        size = f.seek(0, 2)
        f.seek(0)
        if head.startswith(ZIP_MAGIC):
            return "zip", _zip_streams(f), None
        if head.startswith(NPY_MAGIC):
            return "npy", [s for s in [_npy(f, "", size)] if s], None
        if head.startswith(PICKLE_MAGIC) or suffix in PICKLE_SUFFIXES:
            return "pickle", [_pickle(f, "", 0, size)], None
        header_error = _safetensors_error(f, size)
        # Protocols 0 and 1 have no magic: a pickle is what a loader would run. Asked of valid
        # safetensors too: a header can be written to parse as a pickle that imports (a
        # polyglot), and torch.load reads a .bin or .pt that is not a zip as a pickle.
        stream = _pickle(f, "", 0, size)
        if stream.looks_like_pickle():
            return "pickle", [stream], None
        if header_error is None:
            return "safetensors", [], None
        if suffix == ".safetensors":
            return "safetensors", [], f"safetensors header is invalid: {header_error}"
        return suffix.lstrip(".") or "file", [], None


def _zip_streams(f: IO[bytes]) -> list[_Stream]:
    """Members a loader would unpickle: by name (data.pkl) or by content (PROTO opcode, object .npy).
    Other members (tensor storage) are raw data no loader unpickles, and are not parsed."""
    streams = []
    with zipfile.ZipFile(f) as archive:
        # infolist, not namelist: duplicate names are each scanned
        for number, info in enumerate(archive.infolist(), start=1):
            if info.is_dir():
                continue
            where = plain_name(info.filename, f"zip member {number}")  # a member's name is the artifact's text
            with archive.open(info) as member:
                head = member.read(8)
                member.seek(0)
                if head.startswith(NPY_MAGIC):
                    streams += [s for s in [_npy(member, where, info.file_size)] if s]
                elif head.startswith(PICKLE_MAGIC) or Path(info.filename).suffix.lower() in PICKLE_SUFFIXES:
                    streams.append(_pickle(member, where, 0, info.file_size))
    return streams


def _npy(f: IO[bytes], where: str, size: int) -> _Stream | None:
    """An .npy array holds a pickle only when its dtype holds Python objects: read as numpy.load
    reads the header (so 'O', '|O', 'object' or a structured dtype with an object field all
    count), not by looking for b"|O". A header numpy cannot read loads nothing."""
    try:
        version = npy_format.read_magic(f)
        read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        _, _, dtype = read(f, max_header_size=MAX_NPY_HEADER)
    except (ValueError, SyntaxError, TypeError, struct.error) as exc:
        if "header" in str(exc) and "too large" in str(exc) or "max_header_size" in str(exc):
            raise ValueError(f"{where or 'npy'}: header over {MAX_NPY_HEADER} bytes") from None
        return None
    if not dtype.hasobject:
        return None
    return _pickle(f, where, f.tell(), size)


def _pickle(f: IO[bytes], where: str, start: int, size: int) -> _Stream:
    stream = _Stream(where)
    if size - start > MAX_PICKLE_BYTES:
        stream.error = f"pickle of {size - start} bytes exceeds the {MAX_PICKLE_BYTES}-byte scan limit"
        return stream
    f.seek(start)
    _walk(f, stream)
    f.seek(start)
    try:
        result = scan_pickle_bytes(f, where or "artifact", multiple_pickles=True)
    except Exception as exc:  # noqa: BLE001 - whatever picklescan fails on, we could not verify
        stream.error = stream.error or f"picklescan could not parse it ({type(exc).__name__})"
        return stream
    if result.scan_err and stream.error is None:
        stream.error = "picklescan could not parse it to the end"
    for g in result.globals:
        stream.imports.add(f"{g.module}.{g.name}")
        if g.safety is SafetyLevel.Dangerous:
            stream.dangerous.add(f"{g.module}.{g.name}")
    return stream


def _line(f: IO[bytes]) -> bytes:
    line = f.readline()
    if not line.endswith(b"\n"):
        raise ValueError("no newline found: the pickle ends mid-argument")
    return line[:-1]


def _pair(f: IO[bytes]) -> str:
    return f"{_line(f).decode()} {_line(f).decode()}"  # module, name: UTF-8, as the unpickler decodes them


# Text arguments read as the C unpickler reads them, not as pickletools does: pickletools refuses
# what the unpickler accepts (an INT in hex, a STRING decoded as UTF-8 by torch.load), and a walk
# that stopped there would not see the import after it. Their values decide nothing here.
_LENIENT: dict[str, Callable[[IO[bytes]], object]] = {
    "decimalnl_short": lambda f: _line(f).decode("latin-1"),  # INT, and GET/PUT's memo key
    "decimalnl_long": _line, "stringnl": _line, "unicodestringnl": _line, "floatnl": _line,
    "stringnl_noescape": _line, "stringnl_noescape_pair": _pair,
}


_OPCODES = {op.code: op for op in pickletools.opcodes}


def _ops(f: IO[bytes]) -> Iterator[tuple[pickletools.OpcodeInfo, object]]:
    """One pickle's opcodes and arguments, to its STOP (pickletools.genops, with `_LENIENT`)."""
    while True:
        code = f.read(1)
        if not code:
            raise ValueError("pickle exhausted before seeing STOP")
        op = _OPCODES.get(code.decode("latin-1"))
        if op is None:
            raise ValueError(f"opcode {code!r} unknown")
        arg = None if op.arg is None else _LENIENT.get(op.arg.name, op.arg.reader)(f)
        if op.name in ("GET", "PUT"):  # the unpickler's memo keys are numbers, whichever opcode wrote them
            arg = int(str(arg))
        yield op, arg
        if op.name == "STOP":
            return


def _walk(f: IO[bytes], stream: _Stream) -> None:
    """Parse every pickle in `f` to the end of the stream. genops decodes opcodes and runs none.
    Records literal imports (GLOBAL, INST), copyreg extension codes, the first parse error, and
    whether a loader reading the pickles one after another (pickle.load, legacy torch.load) gets to
    an import before it fails (`_Loader`)."""
    loading = True  # the loader is still going: every pickle before this one loaded
    try:
        while True:
            loader = _Loader()
            for op, arg in _ops(f):
                if op.name in ("GLOBAL", "INST"):
                    assert isinstance(arg, str), "GLOBAL and INST carry 'module name' as text"
                    stream.imports.add(".".join(arg.split(" ", 1)))
                elif op.name in ("EXT1", "EXT2", "EXT4"):
                    stream.imports.add(f"{EXTENSION}{arg}")
                if loading and loader.step(op, arg):
                    stream.reaches = True
            loading = loading and not loader.failed
            if not f.read(1):
                stream.clean = True
                return
            f.seek(-1, 1)  # another pickle follows (joblib, legacy torch): it is read too
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError, UnicodeDecodeError, ...
        stream.error = f"{exc} (truncated, corrupt, or data after the pickle)"


def _safetensors_error(f: IO[bytes], size: int) -> str | None:
    """None when `f` is safetensors: 8-byte little-endian length N, then N bytes of a JSON object."""
    f.seek(0)
    raw = f.read(8)
    if len(raw) < 8:
        return f"file of {size} bytes is shorter than the 8-byte header length"
    (length,) = struct.unpack("<Q", raw)
    if not 2 <= length <= min(MAX_SAFETENSORS_HEADER, size - 8):
        return f"header length {length} does not fit a file of {size} bytes"
    try:
        header = json.loads(f.read(length))
    except (ValueError, RecursionError) as exc:
        return f"header is not JSON: {exc}"
    if not isinstance(header, dict):
        return f"header is a JSON {type(header).__name__}, not an object"
    data_bytes = size - 8 - length
    for number, (name, entry) in enumerate(header.items(), start=1):
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list) and isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            tensor = repr(name) if is_plain(name) else f"number {number} in the header"  # the artifact's text
            return f"tensor {tensor} needs dtype, shape and data_offsets within the {data_bytes} data bytes"
    return None
