"""The folder digest (shared.sources.tree): fixed vectors, the coreutils one-liner of docs/sources.md
gives the same digest, names that would make it ambiguous are refused, and a file stays a file."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from shared.sources import ArtifactError, ArtifactSource, tree
from shared.sources.local import copy_tree_verified, hash_tree
from shared.sources.tree import TreeFile

ONE_LINER = ("(cd \"$1\" && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 -r sha256sum --) "
             "| sha256sum")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def coreutils_digest(folder: Path) -> str:
    out = subprocess.run(["bash", "-c", ONE_LINER, "digest", str(folder)], check=True, capture_output=True,
                         env={"PATH": os.environ["PATH"]})
    return out.stdout.decode().split()[0]


def make(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


MLFLOW_LIKE = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04N.", "conda.yaml": b"name: x\n",
               "sub dir/weights.bin": b"\x00" * 1000, "a.txt": b"a", "a/b.txt": b"b", "Z-upper": b"z",
               "caf\u00e9.json": b"{}"}


def test_the_vector_is_the_sha256_of_sorted_sha256sum_lines():
    files = [TreeFile("b.txt", sha(b"b"), 1), TreeFile("a/x.bin", sha(b"x"), 1)]
    expected_listing = f"{sha(b'x')}  a/x.bin\n{sha(b'b')}  b.txt\n".encode()
    assert tree.listing(files) == expected_listing
    assert tree.digest(files) == sha(expected_listing)
    # pinned, so a change of the format cannot pass unnoticed
    assert tree.digest(files) == "cb415d61d023eb5b2775a9307e3ed48361f6810b9cc31c261469e8eda9e1dcf9"
    assert tree.digest(reversed(files)) == tree.digest(files)


def test_paths_sort_bytewise_not_by_locale_or_segment():
    # '.' (0x2e) sorts before '/' (0x2f), and 'Z' before 'a': C-locale order on the whole path
    files = [TreeFile("a/b", "1" * 64, 0), TreeFile("a.txt", "2" * 64, 0), TreeFile("Z", "3" * 64, 0)]
    assert [line.split(b"  ")[1] for line in tree.listing(files).splitlines()] == [b"Z", b"a.txt", b"a/b"]


def test_the_local_folder_digest_equals_the_coreutils_one_liner(tmp_path):
    folder = make(tmp_path / "model", MLFLOW_LIKE)
    (folder / "empty-dir").mkdir()  # skipped, as find -type f skips it
    digest, size, count = hash_tree(folder, folder.as_uri(), 10**9)
    assert digest == coreutils_digest(folder)
    assert (size, count) == (sum(map(len, MLFLOW_LIKE.values())), len(MLFLOW_LIKE))


def test_the_digest_changes_with_any_byte_or_name(tmp_path):
    base = hash_tree(make(tmp_path / "a", {"x": b"1", "y": b"2"}), "file:///a", 100)[0]
    assert hash_tree(make(tmp_path / "b", {"x": b"1", "y": b"3"}), "file:///b", 100)[0] != base
    assert hash_tree(make(tmp_path / "c", {"x": b"1", "z": b"2"}), "file:///c", 100)[0] != base
    assert hash_tree(make(tmp_path / "d", {"x": b"1", "y": b"2", "w": b""}), "file:///d", 100)[0] != base


@pytest.mark.parametrize("name, problem", [
    ("a\nb", "control character"), ("tab\there", "control character"), ("back\\slash", "backslash"),
    ("../up", r"'\.\.' path segment"), ("a/../b", r"'\.\.' path segment"), ("a//b", "empty"),
    ("./a", "'.'"), ("/abs", "absolute path"), ("", "empty name"), ("x" * 1100, "longer than 1024"),
    ("bad-\udcff", "not UTF-8"),
])
def test_ambiguous_names_are_refused_naming_the_fix(name, problem):
    with pytest.raises(ArtifactError, match=f"{problem}.*rename it"):
        tree.digest([TreeFile(name, "0" * 64, 0)], "artifact_uri 'file:///m'")


def test_duplicates_an_empty_folder_and_too_many_files_are_refused():
    with pytest.raises(ArtifactError, match="twice"):
        tree.digest([TreeFile("a", "0" * 64, 0), TreeFile("a", "1" * 64, 0)])
    with pytest.raises(ArtifactError, match="holds no files"):
        tree.digest([])
    with pytest.raises(ArtifactError, match="more than 2 files"):
        tree.digest([TreeFile(str(i), "0" * 64, 0) for i in range(3)], max_files=2)


def test_a_local_folder_with_a_newline_name_a_symlink_or_too_many_files_is_refused(tmp_path):
    newline = make(tmp_path / "n", {"ok": b"1", "bad\nname": b"2"})
    with pytest.raises(ArtifactError, match="control character"):
        hash_tree(newline, newline.as_uri(), 100)
    linked = make(tmp_path / "l", {"ok": b"1"})
    (linked / "escape").symlink_to(tmp_path / "n" / "ok")
    with pytest.raises(ArtifactError, match="symbolic link or a special file"):
        hash_tree(linked, linked.as_uri(), 100)
    many = make(tmp_path / "m", {str(i): b"" for i in range(5)})
    with pytest.raises(ArtifactError, match="more than 4 files"):
        hash_tree(many, many.as_uri(), 100, max_files=4)


def test_a_local_folder_over_the_size_cap_in_all_is_refused(tmp_path):
    folder = make(tmp_path / "m", {"a": b"x" * 60, "b": b"y" * 60})
    with pytest.raises(ArtifactError, match="over the limit of 100 bytes"):
        hash_tree(folder, folder.as_uri(), 100)


async def test_a_file_keeps_its_plain_sha256_and_a_folder_gets_the_tree_digest(tmp_path):
    root = tmp_path / "artifacts"
    make(root / "m", {"w.bin": b"weights"})
    (root / "single.onnx").write_bytes(b"weights")
    source = ArtifactSource(roots=(root,), workdir=tmp_path / "dl")
    assert (await source.digest((root / "single.onnx").as_uri())).sha256 == sha(b"weights")
    folder = await source.digest((root / "m").as_uri())
    assert folder.sha256 == sha(f"{sha(b'weights')}  w.bin\n".encode()) == coreutils_digest(root / "m")
    fetched = await source.fetch((root / "m").as_uri())
    assert fetched.folder and not fetched.temporary and fetched.path == (root / "m").resolve()
    fetched.cleanup()
    assert (root / "m" / "w.bin").exists()  # read in place: never deleted


def test_a_verified_copy_refuses_a_folder_that_changed(tmp_path):
    folder = make(tmp_path / "m", {"a": b"1", "d/b": b"2"})
    digest = hash_tree(folder, folder.as_uri(), 100)[0]
    copy_tree_verified(folder, tmp_path / "copy", digest)
    assert hash_tree(tmp_path / "copy", "file:///copy", 100)[0] == digest
    (folder / "d" / "b").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="changed since it was checked"):
        copy_tree_verified(folder, tmp_path / "copy2", digest)


def test_signoff_digest_prints_what_the_one_liner_prints(tmp_path):
    from typer.testing import CliRunner

    from signoff.cli import app

    folder = make(tmp_path / "model", MLFLOW_LIKE)
    result = CliRunner().invoke(app, ["digest", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == coreutils_digest(folder)
    single = CliRunner().invoke(app, ["digest", (folder / "MLmodel").as_uri()])
    assert single.stdout.splitlines()[0] == sha(MLFLOW_LIKE["MLmodel"])
    refused = CliRunner().invoke(app, ["digest", str(tmp_path / "absent")])
    assert refused.exit_code == 1 and "no such file or folder" in refused.stderr
