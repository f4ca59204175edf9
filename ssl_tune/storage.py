"""Local paths and cloud URIs (s3://, gs://, abfs://) behind one small API, through pyarrow.fs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from ssl_tune.errors import UsageError, first_line


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
    """A URI without a trailing slash, a local path made absolute (Ray wants absolute storage paths)."""
    if is_uri(location):
        path, query = _query(location)
        return path.rstrip("/") + query
    return str(Path(location.removeprefix("file://")).expanduser().resolve())


def _query(uri: str) -> tuple[str, str]:
    """A URI's path and its query ("?endpoint_override=host:9000&scheme=http", or "")."""
    path, mark, query = uri.partition("?")
    return path, mark + query


def join(location: str, *parts: str) -> str:
    """`parts` appended to a path, or to a URI's path (its query, which configures the store, kept last).

    >>> join("s3://bucket/sweeps?endpoint_override=minio:9000&scheme=http", "cifar", "sweep.yaml")
    's3://bucket/sweeps/cifar/sweep.yaml?endpoint_override=minio:9000&scheme=http'
    """
    if not is_uri(location):
        return str(Path(location, *parts))
    path, query = _query(location)
    return "/".join([path.rstrip("/"), *parts]) + query


def split(location: str) -> tuple[str, str]:
    """(parent, name) of a path or a URI (a URI's query stays with the parent).

    >>> split("s3://bucket/sweeps/cifar?scheme=http")
    ('s3://bucket/sweeps?scheme=http', 'cifar')
    """
    if not is_uri(location):
        path = Path(location)
        return str(path.parent), path.name
    path, query = _query(location)
    parent, _, name = path.rstrip("/").rpartition("/")
    return parent + query, name


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(location):
        try:
            return pafs.FileSystem.from_uri(location)
        except (OSError, ValueError) as err:
            raise UsageError(f"{location}: {first_line(err)}") from None
    return pafs.LocalFileSystem(), absolute(location)


def check_bucket(location: str) -> None:
    """A URI's bucket exists and answers with these credentials, else one UsageError line that says which of
    the three it is. Local paths pass. Called by every command before it reads or writes a URI, so a bad
    bucket, endpoint or key fails before anything is written."""
    if not is_uri(location):
        return
    fs, path = filesystem(location)
    bucket = path.split("/", 1)[0]
    try:
        info = fs.get_file_info(bucket)
    except OSError as err:
        raise UsageError(_storage_error(location, err)) from None
    if info.type == pafs.FileType.NotFound:
        raise UsageError(f"{location}: bucket '{bucket}' does not exist (create it first)")


CREDENTIALS_HINT = "give credentials with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the node's role"


def _storage_error(location: str, err: OSError) -> str:
    """One line for an object store's refusal: unreachable endpoint, refused or missing credentials, or the
    store's own first line."""
    message = first_line(err)
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default endpoint"
    if "NETWORK_CONNECTION" in message or "Could not connect" in message or "resolve host" in message:
        return f"{location}: cannot reach {endpoint} (check AWS_ENDPOINT_URL or the URI's endpoint_override)"
    if any(code in message for code in ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoes")):
        return f"{location}: access refused ({message[-100:]}); {CREDENTIALS_HINT}"
    if location.startswith("s3://") and not _has_aws_credentials():
        return f"{location}: no AWS credentials found and the store refused the request ({message[-100:]}); " + (
            CREDENTIALS_HINT
        )
    return f"{location}: {message}"


def _has_aws_credentials() -> bool:
    """Whether any of the AWS SDK's usual credential sources is visible from here (a hint only: an instance
    role is not looked up)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
    files = (os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), "~/.aws/config")
    return any(os.environ.get(name) for name in names) or any(Path(f).expanduser().is_file() for f in files)


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_bytes(location: str) -> bytes:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(location: str) -> str:
    return read_bytes(location).decode()


def write_bytes(location: str, data: bytes) -> None:
    """Atomic on local disks (temp file + rename); a single PUT on object stores."""
    if not is_uri(location):
        atomic_write(location, lambda f: f.write(data))
        return
    fs, path = filesystem(location)
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode())


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


def write_dir(out: str, files: dict[str, bytes]) -> None:
    """Write `files` into the folder `out`, replacing what was there. A local folder is swapped in with one
    rename (`write_dir_atomically`). An object store has no rename: each file is one PUT, made only after every
    file is rendered, and the old files that the new set lacks are deleted after the last PUT."""
    if not is_uri(out):
        write_dir_atomically(Path(out), files)
        return
    fs, root = filesystem(out)
    listed = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True, recursive=True))
    old = [i.path for i in listed if i.type == pafs.FileType.File]
    for name, data in files.items():
        write_bytes(join(out, name), data)
    for path in old:
        if path.removeprefix(root.rstrip("/") + "/") not in files:
            with contextlib.suppress(OSError):
                fs.delete_file(path)


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
