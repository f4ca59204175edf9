"""storage: paths and URIs, atomic files and directories, and the one check behind every --out."""

from __future__ import annotations

import os

import pytest

from ssl_tune.errors import UsageError
from ssl_tune.storage import (
    absolute,
    atomic_write,
    exists,
    is_uri,
    join,
    read_text,
    require_empty_output,
    write_dir_atomically,
    write_text,
)


def test_uris_and_paths(tmp_path):
    assert is_uri("s3://bucket/x") and is_uri("gs://b") and not is_uri("file:///tmp/x") and not is_uri("runs/a")
    assert absolute("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert absolute("file://" + str(tmp_path)) == str(tmp_path)
    assert absolute("~") == os.path.expanduser("~")
    assert join("s3://bucket/a/", "b", "c") == "s3://bucket/a/b/c"
    assert join(str(tmp_path), "b") == str(tmp_path / "b")


def test_text_round_trip_and_exists(tmp_path):
    target = str(tmp_path / "deep" / "f.txt")
    assert not exists(target)
    write_text(target, "héllo\n")
    assert exists(target) and read_text(target) == "héllo\n"
    assert not [p for p in (tmp_path / "deep").iterdir() if p.name != "f.txt"]  # no temporary file left


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_require_empty_output(tmp_path):
    assert require_empty_output(str(tmp_path / "new"), force=False) is False
    assert require_empty_output(str(tmp_path), force=False) is False  # empty dir
    (tmp_path / "x").write_text("1")
    with pytest.raises(UsageError, match="is not empty: pass --force"):
        require_empty_output(str(tmp_path), force=False)
    with pytest.raises(UsageError, match="is not empty: try again"):
        require_empty_output(str(tmp_path), force=False, hint="try again")
    assert require_empty_output(str(tmp_path), force=True) is True
    with pytest.raises(UsageError, match="not a directory"):
        require_empty_output(str(tmp_path / "x"), force=True)


def test_write_dir_atomically_replaces_whole_or_not_at_all(tmp_path):
    out = tmp_path / "report"
    write_dir_atomically(out, {"a.txt": b"1", "b.txt": b"2"})
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    write_dir_atomically(out, {"c.txt": b"3"})
    assert [p.name for p in out.iterdir()] == ["c.txt"]  # replaced, not merged

    with pytest.raises(TypeError):
        write_dir_atomically(out, {"d.txt": b"4", "e.txt": None})  # type: ignore[dict-item]
    assert [p.name for p in out.iterdir()] == ["c.txt"]  # the previous directory stays
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary directories left
