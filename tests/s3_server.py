"""A real S3 API on loopback for tests: moto's server mode (`moto[server]`, in the dev extras), one process per
use, its buckets in memory. `s3_server()` yields the environment a client needs (AWS_ENDPOINT_URL and test
credentials); pyarrow, Ray and ssl-tune all read it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from tests.helpers import free_port

BUCKET = "ssl-tune"


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert proc.poll() is None, "moto's server exited at start"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"moto's server did not listen on port {port}")


@contextlib.contextmanager
def s3_server(buckets: tuple[str, ...] = (BUCKET,), *, check_credentials: bool = False) -> Iterator[dict[str, str]]:
    """Start moto's S3 server on a free loopback port with `buckets` made, and yield the client environment.
    `check_credentials`: the server verifies every request's signature (moto's IAM checks), so missing or
    unknown keys are refused as a real store would refuse them."""
    port = free_port()
    env = dict(os.environ)
    if check_credentials:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    server = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(server, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role lookup on a machine without one
    }
    try:
        _wait_for_port(port, proc)
        if buckets:
            admin = pafs.S3FileSystem(
                access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True,
            )  # fmt: skip
            for bucket in buckets:
                admin.create_dir(bucket)
        yield client
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()


def s3_files(uri: str, env: dict[str, str]) -> dict[str, int]:
    """Every file under `uri`, read through the S3 API: its path below `uri` -> its size."""
    fs, root = _s3(uri, env)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path.removeprefix(root + "/"): i.size for i in infos if i.type == pafs.FileType.File}


def s3_read(uri: str, env: dict[str, str]) -> bytes:
    fs, path = _s3(uri, env)
    with fs.open_input_stream(path) as f:
        return f.read()


def _s3(uri: str, env: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    bucket_path = uri.removeprefix("s3://").rstrip("/")
    fs = pafs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
        scheme="http", endpoint_override=env["AWS_ENDPOINT_URL"].removeprefix("http://"),
    )  # fmt: skip
    return fs, bucket_path
