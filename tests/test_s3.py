"""Storage through a real S3 API (moto's server on loopback, `tests/s3_server.py`): every command that reads or
writes storage, with a custom endpoint (AWS_ENDPOINT_URL, as MinIO, Ceph and R2 users set it), and every bad
store refused in one line before anything is written."""

from __future__ import annotations

import io
import json
import sys

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tests.helpers import free_port, run_cli, write_space
from tests.s3_server import BUCKET, s3_files, s3_read, s3_server

SSL_TUNE = [sys.executable, "-m", "ssl_tune"]


def _one_line_refusal(proc, *expected: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def test_a_missing_bucket_is_one_line_and_nothing_is_written(tmp_path):
    space = write_space(tmp_path / "space.yaml")
    with s3_server() as env:
        sweep = run_cli([*SSL_TUNE, "sweep", "--space", str(space), "--storage", "s3://no-such-bucket/sweeps"], env=env)
        _one_line_refusal(sweep, "s3://no-such-bucket/sweeps: bucket 'no-such-bucket' does not exist")
        pack = [*SSL_TUNE, "data", "pack", "--source", "synthetic", "--train-subset", "64", "--test-subset", "16"]
        _one_line_refusal(run_cli([*pack, "--out", "s3://no-such-bucket/data"], env=env), "does not exist")
        export = [*SSL_TUNE, "export", "--sweep", f"s3://{BUCKET}/none", "--out", str(tmp_path / "out")]
        _one_line_refusal(run_cli(export, env=env), f"sweep s3://{BUCKET}/none does not exist")
        assert s3_files(f"s3://{BUCKET}", env) == {}
    assert not (tmp_path / "out").exists()


def test_refused_or_missing_credentials_are_one_line(tmp_path):
    space = write_space(tmp_path / "space.yaml")
    sweep = [*SSL_TUNE, "sweep", "--space", str(space), "--storage", f"s3://{BUCKET}/sweeps"]
    with s3_server((), check_credentials=True) as env:  # the server checks every request's signature
        _one_line_refusal(run_cli(sweep, env=env), "access refused", "AWS_ACCESS_KEY_ID")  # keys it does not know
        anonymous = {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "HOME": str(tmp_path)}
        _one_line_refusal(run_cli(sweep, env=anonymous), "no AWS credentials found", "AWS_ACCESS_KEY_ID")


def test_an_unreachable_endpoint_is_one_line(tmp_path):
    space = write_space(tmp_path / "space.yaml")
    closed = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "testing"}
    closed |= {"AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
    proc = run_cli([*SSL_TUNE, "sweep", "--space", str(space), "--storage", f"s3://{BUCKET}/s"], env=closed)
    _one_line_refusal(proc, f"cannot reach {closed['AWS_ENDPOINT_URL']}")


def test_a_folder_rewritten_in_s3_keeps_only_the_new_files(monkeypatch):
    """`--force` onto a bucket folder (report, export): the new files replace the old, and old files that the
    new set lacks are removed, as the local folder swap does."""
    from ssl_tune.storage import write_dir

    with s3_server() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        out = f"s3://{BUCKET}/report"
        write_dir(out, {"a.png": b"1", "report.html": b"old"})
        write_dir(out, {"b.png": b"2", "report.html": b"new"})
        assert s3_files(out, env) == {"b.png": 1, "report.html": 3}
        assert s3_read(f"{out}/report.html", env) == b"new"


def _plain(uri: str) -> str:
    return uri.partition("?")[0]


@pytest.mark.slow  # two local Ray clusters (the sweep, confirm)
def test_pack_sweep_export_report_eval_confirm_all_in_s3(tmp_path, cifar_dir, monkeypatch):
    """CIFAR-10 packed into the bucket, a sweep that streams it from there and keeps its trials, checkpoints and
    Optuna journal there, then export, report, eval and confirm on it: every result read back through S3. The
    endpoint is given in the URIs (`?endpoint_override=…&scheme=http`), not in the environment."""
    with s3_server() as env:
        endpoint = env["AWS_ENDPOINT_URL"].removeprefix("http://")
        query = f"?endpoint_override={endpoint}&scheme=http"
        bucket = f"s3://{BUCKET}"
        data, store = f"{bucket}/datasets/cifar10{query}", f"{bucket}/sweeps{query}"
        sweep_dir = f"{bucket}/sweeps/s3{query}"
        fixed = {"dataset": "parquet", "data_dir": data, "data_placement": "streamed_shards", "epochs": 1}
        fixed |= {"train_subset": None, "test_subset": None, "batch_size": 64, "val_size": 100}
        fixed |= {"stream_eval_subset": 300}
        space = write_space(tmp_path / "space.yaml", fixed=fixed, sweep={"num_samples": 2})
        keys = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"}  # the keys alone

        pack = [*SSL_TUNE, "data", "pack", "--source", "cifar10", "--data-dir", str(cifar_dir), "--out", data]
        packed = run_cli([*pack, "--train-subset", "600", "--test-subset", "200"], env=keys)
        assert packed.returncode == 0, packed.stderr[-3000:]
        packed_files = set(s3_files(_plain(data), env))
        assert {"dataset.json", "train/part-00000.parquet", "test/part-00000.parquet"} <= packed_files

        swept = run_cli([*SSL_TUNE, "sweep", "--space", str(space), "--storage", store, "--name", "s3"], env=keys)
        assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
        files = s3_files(_plain(sweep_dir), env)
        trials = sorted({name.split("/")[0] for name in files if name.startswith("trial-")})
        assert len(trials) == 2
        for trial in trials:  # results, its end, and its last epoch's checkpoint, all in the bucket
            assert {f"{trial}/result.json", f"{trial}/trial_end.json"} <= set(files)
            assert any(n.startswith(f"{trial}/checkpoint_") and n.endswith("/state.pt") for n in files), files
        journal = tmp_path / "optuna.journal"  # the Optuna journal's copy, as --resume reads it
        journal.write_bytes(s3_read(f"{_plain(sweep_dir)}/optuna.journal", env))
        (study,) = optuna.get_all_study_summaries(JournalStorage(JournalFileBackend(str(journal))))
        assert study.n_trials == 2

        for key, value in keys.items():
            monkeypatch.setenv(key, value)
        from ssl_tune.tune.results import load_sweep

        best = load_sweep(sweep_dir).best()
        assert _plain(best.checkpoint).startswith(f"{_plain(sweep_dir)}/trial-")

        exported = run_cli([*SSL_TUNE, "export", "--sweep", sweep_dir, "--out", f"{bucket}/best{query}"], env=keys)
        assert exported.returncode == 0, exported.stderr[-3000:]
        config = yaml.safe_load(s3_read(f"{bucket}/best/best.yaml", env))
        assert config["lr"] == pytest.approx(best.params["lr"]) and config["data_dir"] == data
        assert pq.read_table(io.BytesIO(s3_read(f"{bucket}/best/trials.parquet", env))).num_rows == 2
        assert "backbone.pt" in s3_files(f"{bucket}/best", env)

        report = [*SSL_TUNE, "report", "--sweep", sweep_dir, "--out", f"{bucket}/report{query}"]
        reported = run_cli(report, env=keys)
        assert reported.returncode == 0, reported.stderr[-3000:]
        assert b"ssl-tune sweep report" in s3_read(f"{bucket}/report/report.html", env)

        evaluated = run_cli([*SSL_TUNE, "eval", "--sweep", sweep_dir], env=keys)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        numbers = json.loads(s3_read(f"{_plain(best.trial_dir)}/eval.json", env))
        assert 0 <= numbers["test_knn_acc"] <= 1 and numbers["epoch"] == 1

        confirm = [*SSL_TUNE, "confirm", "--sweep", sweep_dir, "--top", "1", "--seeds", "1", "--epochs", "1"]
        confirmed = run_cli(confirm, env=keys)
        assert confirmed.returncode == 0, confirmed.stdout[-3000:] + confirmed.stderr[-3000:]
        rows = pq.read_table(io.BytesIO(s3_read(f"{_plain(sweep_dir)}/confirm/confirm.parquet", env))).to_pylist()
        assert len(rows) == 1 and 0 <= rows[0]["test_knn_acc"] <= 1
