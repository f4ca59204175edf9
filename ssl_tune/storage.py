"""Local paths and cloud URIs (s3://, gs://, abfs://) behind one small API, through pyarrow.fs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from ssl_tune.errors import UsageError


def atomic_write(path: str | Path, write: Any) -> None:
    """Call `write(file)` on a temporary file beside `path`, fsync it, and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_uri(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def absolute(location: str) -> str:
    """A URI unchanged, a local path made absolute (Ray wants absolute storage paths)."""
    if is_uri(location):
        return location.rstrip("/")
    return str(Path(location.removeprefix("file://")).expanduser().resolve())


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts]) if is_uri(location) else str(Path(location, *parts))


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), absolute(location)


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_text(location: str) -> str:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def write_text(location: str, text: str) -> None:
    """Atomic on local disks (temp file + rename); a single PUT on object stores."""
    if not is_uri(location):
        atomic_write(location, lambda f: f.write(text.encode()))
        return
    fs, path = filesystem(location)
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def require_empty_output(location: str, *, force: bool, hint: str = "pass --force to overwrite it") -> bool:
    """Refuse an output that is a file, or (without `force`) a non-empty directory: the one check behind
    every `--out`. Local paths and URIs alike. Returns whether there is anything there to replace."""
    fs, root = filesystem(location)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise UsageError(f"--out {location} exists and is not a directory")
    occupied = info.type == pafs.FileType.Directory and bool(fs.get_file_info(pafs.FileSelector(root)))
    if occupied and not force:
        raise UsageError(f"--out {location} is not empty: {hint}")
    return occupied


def write_dir_atomically(out: Path, files: dict[str, bytes]) -> None:
    """Write `files` into a temporary directory beside `out`, then swap it in with one rename: a reader sees
    the old directory or the new one, never a mix; on any error the old one stays."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    old: Path | None = None
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if out.exists():  # empty, or --force: move it aside, put the new one in place, then delete it
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old / out.name, out)  # put the previous directory back
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
