"""The security scan: static only, an allowlist of globals, and fail closed on what it cannot read."""

from __future__ import annotations

import json
import os
import pickle
import random
import shlex
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path

import pytest

from services.validator import security

ORDERED_DICT = "collections.OrderedDict"
SYSTEM = {"os.system", "posix.system", "nt.system"}


class Call:
    """Pickles as a call of `func(*args)`: what a malicious artifact does on unpickling."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def malicious(marker: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    return pickle.dumps(Call(os.system, f"touch {shlex.quote(str(marker))}"), protocol=protocol)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def torch_zip(path: Path, data_pkl: bytes) -> Path:
    """The layout torch.save writes: archive/data.pkl plus raw storage members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/data/0", random.Random(1).randbytes(4096))
        z.writestr("archive/version", b"3\n")
    return path


def safetensors(header: object, data: bytes = b"\x00" * 8) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def system_in(message: str) -> str:
    named = [g for g in SYSTEM if g in message]
    assert named, message
    return named[0]


def test_malicious_pickle_is_blocked_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = malicious(marker)
    r = security.scan(write(tmp_path / "scan" / "model.pkl", payload), [ORDERED_DICT])

    assert (r.name, r.passed, r.blocking) == ("security", False, True)
    assert f"imports {system_in(r.message)}, which is not in the allowlist" in r.message
    assert r.threshold == "allowlist of 1 globals"
    assert not marker.exists()

    # Control: the very same bytes, unpickled in another process, do run the payload.
    control = write(tmp_path / "control" / "model.pkl", payload)
    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(open(sys.argv[1],'rb').read())",
                    str(control)], cwd=control.parent, check=True, timeout=60)
    assert marker.exists()


def test_scan_never_calls_the_unpickler(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the scan unpickled the artifact")

    for name in ("load", "loads", "Unpickler", "_load", "_loads", "_Unpickler"):
        monkeypatch.setattr(pickle, name, refuse, raising=False)
    assert not security.scan(write(tmp_path / "m.pkl", malicious(tmp_path / "x")), []).passed
    assert security.scan(write(tmp_path / "ok.pkl", pickle.dumps(OrderedDict(a=1))), [ORDERED_DICT]).passed


def test_malicious_pickle_in_a_torch_zip_is_blocked_naming_the_member(tmp_path):
    r = security.scan(torch_zip(tmp_path / "model.pt", malicious(tmp_path / "pwned")), [ORDERED_DICT])
    assert not r.passed
    assert f"archive/data.pkl: imports {system_in(r.message)}" in r.message
    assert r.measured.startswith("zip:")


def test_torch_zip_with_allowed_globals_passes_without_reading_storage_as_pickle(tmp_path):
    r = security.scan(torch_zip(tmp_path / "model.pt", pickle.dumps(OrderedDict(w=1))), [ORDERED_DICT])
    assert r.passed, r.message
    assert r.measured == "zip: 1 globals"


def test_malicious_pickle_named_joblib_is_blocked(tmp_path):
    r = security.scan(write(tmp_path / "model.joblib", malicious(tmp_path / "pwned")), [ORDERED_DICT])
    assert not r.passed and system_in(r.message)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_allowlist_not_blocklist(tmp_path, protocol):
    # No suffix: protocols 0 and 1 have no magic bytes and are recognised by parsing.
    path = write(tmp_path / "artifact", pickle.dumps(OrderedDict(a=1), protocol=protocol))
    ok = security.scan(path, [ORDERED_DICT])
    assert ok.passed, ok.message
    assert ok.measured == "pickle: 1 globals"

    refused = security.scan(path, [])  # picklescan rates OrderedDict safe; our allowlist decides
    assert not refused.passed
    assert "imports collections.OrderedDict, which is not in the allowlist" in refused.message
    assert refused.threshold == "allowlist of 0 globals"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_malicious_pickle_blocked_in_every_protocol_without_suffix(tmp_path, protocol):
    r = security.scan(write(tmp_path / "artifact", malicious(tmp_path / "pwned", protocol)), [ORDERED_DICT])
    assert not r.passed and system_in(r.message)


@pytest.mark.parametrize(("call", "name"), [
    (Call(eval, "1+1"), "builtins.eval"),
    (Call(exec, "pass"), "builtins.exec"),
    (Call(subprocess.Popen, ["true"]), "subprocess.Popen"),
    (Call(getattr, Decimal(1), "real"), "builtins.getattr"),
])
def test_dangerous_globals_block_whatever_harmless_names_are_allowed(tmp_path, call, name):
    harmless = [ORDERED_DICT, "numpy.ndarray", "numpy.dtype", "decimal.Decimal"]
    r = security.scan(write(tmp_path / "model.pkl", pickle.dumps(call)), harmless)
    assert not r.passed
    assert f"imports {name}, which is not in the allowlist (picklescan rates it dangerous)" in r.message


def test_global_picklescan_finds_unremarkable_still_needs_the_allowlist(tmp_path):
    path = write(tmp_path / "model.pkl", pickle.dumps(Decimal("1.5")))
    blocked = security.scan(path, [ORDERED_DICT])
    assert not blocked.passed and "imports decimal.Decimal, which is not in the allowlist" in blocked.message
    assert security.scan(path, ["decimal.Decimal"]).passed


def test_allowlisting_a_global_picklescan_rates_dangerous_still_blocks(tmp_path):
    payload = malicious(tmp_path / "pwned")
    r = security.scan(write(tmp_path / "model.pkl", payload), sorted(SYSTEM))
    assert not r.passed
    expected = f"imports {system_in(r.message)}: allowed by the workflow but picklescan rates it dangerous"
    assert expected in r.message


def test_copyreg_extension_codes_are_globals_too(tmp_path):
    r = security.scan(write(tmp_path / "model.pkl", b"\x80\x02\x82\x01."), [ORDERED_DICT])
    assert not r.passed and "copyreg.extension_1" in r.message


def test_valid_safetensors_passes(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"format": "pt"}}
    r = security.scan(write(tmp_path / "model.safetensors", safetensors(header)), [])
    assert r.passed, r.message
    assert r.measured == "safetensors"


@pytest.mark.parametrize(("data", "reason"), [
    (struct.pack("<Q", 10**12) + b"{}", "header length 1000000000000 does not fit"),
    (struct.pack("<Q", 4) + b"{{{{", "header is not JSON"),
    (safetensors([1, 2]), "header is a JSON list, not an object"),
    (safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}), "tensor 'w' needs"),
    (b"\x01\x02", "shorter than the 8-byte header length"),
])
def test_corrupt_safetensors_fails_with_the_reason(tmp_path, data, reason):
    r = security.scan(write(tmp_path / "model.safetensors", data), [])
    assert not r.passed
    assert r.message.startswith("safetensors header is invalid:") and reason in r.message


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_pickle_named_safetensors_is_scanned_as_pickle(tmp_path, protocol):
    r = security.scan(write(tmp_path / "model.safetensors", malicious(tmp_path / "pwned", protocol)), [])
    assert not r.passed and system_in(r.message)
    assert r.measured.startswith("pickle:")


def test_random_bytes_named_onnx_have_no_pickle_content(tmp_path):
    r = security.scan(write(tmp_path / "model.onnx", random.Random(7).randbytes(64 * 1024)), [])
    assert r.passed, r.message
    assert r.measured == "onnx: no pickle content"


def test_random_artifacts_are_read_as_pickles_only_when_they_start_with_its_magic(tmp_path):
    # 1 random file in 60 used to read as a pickle that "cannot be verified": a first byte that is a
    # STOP, an EXT1-4 extension code, or a constant then STOP, none of which a loader runs.
    rng, path, misread = random.Random(15), tmp_path / "model.onnx", []
    for _ in range(2000):
        data = rng.randbytes(4096)
        r = security.scan(write(path, data), [])
        if r.measured != "onnx: no pickle content" and not data.startswith(security.PICKLE_MAGIC):
            misread.append((data[:8], r.message))
    assert misread == []


@pytest.mark.parametrize("head", [b".", b"\x82\x01", b"\x83\x01\x02", b"\x88.", b"N.", b"Q.", b"N]Q."])
def test_what_loads_nothing_then_junk_is_not_a_pickle(tmp_path, head):
    r = security.scan(write(tmp_path / "model.bin", head + b"\xff\xfe\xfd" * 10), [])
    assert r.passed and r.measured == "bin: no pickle content", r.message


def test_a_pickle_read_cleanly_to_its_end_is_one_even_if_it_imports_nothing(tmp_path):
    r = security.scan(write(tmp_path / "model.bin", b"(K\x01K\x02l."), [])  # protocol 0: [1, 2]
    assert r.measured == "pickle: 0 globals" and r.passed, r.message


def sbu(text: str) -> bytes:
    """SHORT_BINUNICODE: a string pushed on the unpickler's stack."""
    return b"\x8c" + bytes([len(text)]) + text.encode()


def stack_global_call(marker: Path, between: bytes = b"") -> bytes:
    """os.system(touch marker) by STACK_GLOBAL and REDUCE, with no PROTO header (no magic)."""
    return sbu("os") + sbu("system") + between + b"\x93" + sbu(f"touch {marker}") + b"\x85R"


@pytest.mark.parametrize(("name", "tail"), [
    ("a second pickle picklescan cannot parse", b".\x93."),  # its ValueError left no import named
    ("a second pickle cut short", b".\x93"),
    ("no STOP, a bad opcode", b"\xff"),
])
@pytest.mark.parametrize("suffix", [".bin", ".onnx", ".dat"])
def test_stack_global_calls_without_magic_are_blocked_whatever_follows(tmp_path, name, tail, suffix):
    marker = tmp_path / "pwned"
    data = stack_global_call(marker, between=b")0" if "opcode" in name else b"") + tail  # ) 0: picklescan's "unknown"
    path = write(tmp_path / f"model{suffix}", data)
    r = security.scan(path, [])
    assert not r.passed and r.measured.startswith("pickle:"), (name, r.message)
    # and it is an attack: pickle.load runs it
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"],
                   capture_output=True, check=False)
    assert marker.exists()


def runs_on_load(path: Path, marker: Path, load: str = "pickle.load(open(P, 'rb'))") -> bool:
    """Whether `load` (a loader call on P) runs the payload, in a child process."""
    code = f"import pickle, numpy; P = {str(path)!r}; {load}"
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    return marker.exists()


def polyglot_safetensors(tail: bytes) -> bytes:
    """A valid safetensors header (a JSON object, no tensors) that is also a protocol-1 pickle:
    SHORT_BINBYTES hops over the length's zero bytes and along a JSON string, whose final '}' is
    EMPTY_DICT; the pickle `tail` follows the header."""
    width = 40
    length = 0x43 + 256 * width
    head, prefix = bytes([0x43, width, 0, 0, 0, 0, 0, 0]), b'{"__metadata__":"'
    end = 8 + length
    body = bytearray(b"a" * (end - 8))
    body[:len(prefix)], body[-2:] = prefix, b'"}'
    pos = 2 + width
    while True:
        rest = end - 1 - pos
        if 32 <= rest - 2 <= 126 and rest - 2 not in (0x22, 0x5C):
            body[pos - 8:pos - 6] = bytes([0x43, rest - 2])
            break
        hop = 100 if rest - 102 >= 34 else 40
        body[pos - 8:pos - 6] = bytes([0x43, hop])
        pos += 2 + hop
    return head + bytes(body) + tail


def protocol_0_call(marker: Path) -> bytes:
    return b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


@pytest.mark.parametrize(("name", "data", "load"), [
    # Text arguments pickletools refuses but the unpickler reads: the import after them was unseen.
    ("a hex INT", lambda m: b"I0x10\n0" + protocol_0_call(m), None),
    ("a hex LONG", lambda m: b"L0x10L\n0" + protocol_0_call(m), None),
    ("a UTF-8 STRING, as torch.load decodes", lambda m: "S'\u00e9'\n0".encode() + protocol_0_call(m),
     "pickle.load(open(P, 'rb'), encoding='utf-8')"),
    # POP takes a mark off the top: the stack model said the loader failed there.
    ("POP on a mark", lambda m: sbu("os") + sbu("system") + b"(0\x93" + sbu(f"touch {m}") + b"\x85R.\xff", None),
    ("a valid safetensors header", lambda m: polyglot_safetensors(b"0" + protocol_0_call(m)), None),
])
@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_what_pickletools_or_a_header_would_hide_is_still_read_as_a_pickle(tmp_path, name, data, load, suffix):
    marker = tmp_path / "pwned"
    path = write(tmp_path / f"model{suffix}", data(marker))
    r = security.scan(path, [])
    assert not r.passed and r.measured.startswith("pickle:"), (name, r.message)
    assert runs_on_load(path, marker, load or "pickle.load(open(P, 'rb'))"), f"{name}: not an attack after all"


@pytest.mark.parametrize("descr", ["'O'", "'|O'", "'object'", "[('w', '<f8'), ('meta', 'O')]"])
def test_an_npy_whose_dtype_holds_objects_is_scanned_however_it_is_spelled(tmp_path, descr):
    marker = tmp_path / "pwned"
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    path = write(tmp_path / "weights.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
                 + malicious(marker, 2))
    r = security.scan(path, [])
    assert not r.passed and system_in(r.message), (descr, r.message)
    if "meta" not in descr:  # a one-field object array: numpy unpickles it
        assert runs_on_load(path, marker, "numpy.load(P, allow_pickle=True)")


def test_an_npy_of_numbers_has_no_pickle_content(tmp_path):
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    r = security.scan(write(tmp_path / "weights.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
                            + struct.pack("<2d", 0.5, 1.5)), [])
    assert r.passed and r.measured == "npy: no pickle content", r.message


@pytest.mark.parametrize("head", [b"\x93", b"K\x01\x93", b"]N\x93", sbu("os") + b"(\x93"])
def test_a_stack_global_without_two_strings_under_it_imports_nothing(tmp_path, head):
    # The loader fails there ("STACK_GLOBAL requires str", or a pop below the stack or its mark).
    r = security.scan(write(tmp_path / "model.bin", head + b"\xff\xfe\xfd" * 10), [])
    assert r.passed and r.measured == "bin: no pickle content", r.message


def test_malicious_pickle_without_magic_then_junk_is_blocked(tmp_path):
    data = malicious(tmp_path / "pwned", 0) + os.urandom(64)
    r = security.scan(write(tmp_path / "model.bin", data), [])
    assert not r.passed and system_in(r.message)


@pytest.mark.parametrize("cut", [1, 5, 20])
@pytest.mark.parametrize("obj", [OrderedDict(a=1, b=[1, 2, 3]), {"weights": [0.5] * 8}])
def test_truncated_pickle_fails_closed(tmp_path, cut, obj):
    # picklescan alone reports nothing wrong with a truncated pickle that imports no global.
    r = security.scan(write(tmp_path / "model.pkl", pickle.dumps(obj)[:-cut]), [ORDERED_DICT])
    assert not r.passed
    assert "cannot be verified, re-export it" in r.message


def test_truncated_pickle_in_a_zip_fails_closed_naming_the_member(tmp_path):
    r = security.scan(torch_zip(tmp_path / "model.pt", pickle.dumps(OrderedDict(a=1))[:-3]), [ORDERED_DICT])
    assert not r.passed and "archive/data.pkl: pickle cannot be verified" in r.message


@pytest.mark.parametrize("obj", [OrderedDict(a=1), {"weights": [0.5]}])
def test_data_after_the_pickle_fails_closed(tmp_path, obj):
    # joblib writes numpy arrays as raw bytes inside the stream; they cannot be skipped statically.
    data = pickle.dumps(obj) + b"\x00\xff\x00\xff"
    r = security.scan(write(tmp_path / "model.joblib", data), [ORDERED_DICT])
    assert not r.passed and "cannot be verified" in r.message


def test_plain_data_pickle_passes_with_an_empty_allowlist(tmp_path):
    r = security.scan(write(tmp_path / "model.pkl", pickle.dumps({"weights": [0.5, 1.5], "bias": 0.1})), [])
    assert r.passed, r.message
    assert r.measured == "pickle: 0 globals"


def test_object_array_in_npz_is_scanned(tmp_path):
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + malicious(tmp_path / "pwned")
    path = tmp_path / "arrays.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights.npy", npy)
    r = security.scan(path, [])
    assert not r.passed and "weights.npy: imports" in r.message and system_in(r.message)


def test_unreadable_zip_fails_closed(tmp_path):
    r = security.scan(write(tmp_path / "model.pt", b"PK\x03\x04" + b"\x00" * 40), [])
    assert not r.passed and r.measured == "unreadable"


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt"])
def test_raw_tensor_bytes_under_a_generic_name_are_not_taken_for_a_pickle(tmp_path, suffix):
    """Generic names hold raw weights as often as pickles: the content decides, not the name."""
    raw = random.Random(7).randbytes(4096).replace(b"\x80", b"\x00")
    result = security.scan(write(tmp_path / f"weights{suffix}", raw), [])
    assert result.passed and "no pickle content" in str(result.measured)


@pytest.mark.parametrize(("suffix", "protocol"), [(".bin", 0), (".pt", 2), (".ckpt", 5)])
def test_a_pickle_under_a_generic_name_is_still_scanned(tmp_path, suffix, protocol):
    marker = tmp_path / "pwned"
    result = security.scan(write(tmp_path / f"model{suffix}", malicious(marker, protocol)), [])
    assert not result.passed and system_in(result.message)
    assert not marker.exists()
