"""Bad packed data and bad pack input: exit 2, one line, no traceback, nothing written. A missing shard or a
shard of another schema is found before any image is decoded; a corrupt image is reported by shard and row,
or left out and counted with skip_corrupt. `ssl-tune data check` finds them all. Real shards from `data pack`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.data.imagefolder import list_folder
from ssl_tune.data.synthetic import generate
from ssl_tune.data.training import load_run_data
from ssl_tune.errors import UsageError
from tests.data.test_parquet_folders import write_images

TRAIN, TEST, SHARD = 120, 40, 40  # 3 train shards, 1 test shard


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad") / "good"
    args = ["data", "pack", "--source", "synthetic", "--out", str(out), "--image-size", "32"]
    assert main([*args, "--train-subset", str(TRAIN), "--test-subset", str(TEST), "--shard-size", str(SHARD)]) == 0
    return out


@pytest.fixture
def copy(packed, tmp_path) -> Path:
    shutil.copytree(packed, tmp_path / "set")
    return tmp_path / "set"


def refused(capsys, args: list[str], message: str) -> str:
    """`ssl-tune ARGS` exits 2 with `message` as its one line on stderr. Returns what it printed on stdout."""
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.out


def train_args(location: Path, out: Path) -> list[str]:
    return ["train", "--dataset", "parquet", "--data-dir", str(location), "--epochs", "1", "--out", str(out)]


def rewrite(shard: Path, change) -> None:
    """Rewrite a shard with `change(table) -> table`."""
    pq.write_table(change(pq.read_table(shard)), shard, compression="none")


def test_a_missing_shard_is_found_before_any_image_is_decoded(copy, tmp_path, capsys):
    (copy / "train" / "part-00002.parquet").unlink()
    message = f"{copy}/train/part-00002.parquet is missing (listed in dataset.json)"
    refused(capsys, ["data", "check", str(copy)], message)
    refused(capsys, train_args(copy, tmp_path / "run"), message)
    assert not (tmp_path / "run").exists()
    # a corrupt image in shard 0 is not reached: the shards are checked first
    rewrite(copy / "train" / "part-00000.parquet", lambda t: t.set_column(2, "image", pa.array([b"x"] * len(t))))
    with pytest.raises(UsageError, match=r"part-00002\.parquet is missing"):
        load_data("parquet", str(copy))


def test_a_shard_with_another_schema(copy, tmp_path, capsys):
    def int32_labels(table: pa.Table) -> pa.Table:
        return table.set_column(1, "label", table.column("label").cast(pa.int32()))

    rewrite(copy / "train" / "part-00001.parquet", int32_labels)
    message = (
        f"{copy}/train/part-00001.parquet has columns (index int64, label int32, image binary), "
        "not the packed (index int64, label int64, image binary)"
    )
    refused(capsys, ["data", "check", str(copy)], message)
    refused(capsys, train_args(copy, tmp_path / "run"), message)
    assert not (tmp_path / "run").exists()
    rewrite(copy / "test" / "part-00000.parquet", lambda t: t.drop_columns(["index"]))
    with pytest.raises(UsageError, match=r"test/part-00000.parquet has columns \(label int64, image binary\)"):
        load_data("parquet", str(copy), train_subset=SHARD)  # the train shard read is fine; the test one is not
    # rows that dataset.json does not list
    rewrite(copy / "train" / "part-00000.parquet", lambda t: t.slice(0, 30))
    with pytest.raises(UsageError, match=r"part-00000\.parquet holds 30 rows; dataset\.json lists 40"):
        load_data("parquet", str(copy), with_test=False)


def test_a_corrupt_image_is_reported_by_shard_and_row_or_skipped_and_counted(copy, packed, tmp_path, capsys):
    def corrupt(table: pa.Table) -> pa.Table:
        images = table.column("image").to_pylist()
        images[3] = images[3][: len(images[3]) // 2]  # truncated
        images[5] = b"not an image at all"
        return table.set_column(2, "image", pa.array(images, pa.binary()))

    rewrite(copy / "train" / "part-00001.parquet", corrupt)
    where = f"{copy}/train/part-00001.parquet"
    refused(capsys, train_args(copy, tmp_path / "run"), f"{where} row 3 (index 43): corrupt image:")
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match=r"skip_corrupt: true leaves such images out"):
        load_data("parquet", str(copy))
    assert load_data("parquet", str(copy), train_subset=SHARD).num_train == SHARD  # shard 1 is never decoded

    printed = refused(capsys, ["data", "check", str(copy)], f"{copy}: 2 corrupt images, the first: {where} row 3")
    assert [line.split(": corrupt image:")[0] for line in printed.splitlines() if line.startswith("corrupt:")] == [
        f"corrupt: {where} row 3 (index 43)",
        f"corrupt: {where} row 5 (index 45)",
    ]

    # skip_corrupt, as a run's config key: the other images, in order, and the count on stderr
    cfg = build_config({"dataset": "parquet", "data_dir": str(copy), "skip_corrupt": True})
    data = load_run_data(cfg)
    assert "skipped 2 corrupt image(s)" in capsys.readouterr().err
    good = load_data("parquet", str(packed))
    keep = [i for i in range(TRAIN) if i not in (43, 45)]
    assert torch.equal(data.train_images, good.train_images[keep])
    assert torch.equal(data.train_labels, good.train_labels[keep])
    assert torch.equal(data.test_images, good.test_images)


def test_data_check_passes_a_good_set(packed, capsys):
    assert main(["data", "check", str(packed)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = "120 train images (png) in 3 shards, 40 test images (png) in 1 shard, 10 classes, 32px"
    assert last == f"ok: {packed}: {summary}"


def test_a_corrupt_source_file_stops_a_pack_with_nothing_written_or_is_skipped(tmp_path, capsys):
    images, _ = generate(24, 32, seed=13)
    write_images(tmp_path / "flat", images, "j")
    last = list_folder(tmp_path / "flat").train[-1][0]  # the last one packed: shards were written before it
    Path(last).write_bytes(Path(last).read_bytes()[:300])
    out = tmp_path / "out"
    args = ["data", "pack", "--source", "imagefolder", "--data-dir", str(tmp_path / "flat"), "--image-size", "32"]
    args += ["--shard-mb", "0.002", "--out", str(out)]
    refused(capsys, args, f"cannot read image {last}: ")
    assert not out.exists()
    out.mkdir()  # an empty --out stays empty
    refused(capsys, args, "pass --skip-corrupt to leave such files out")
    assert list(out.iterdir()) == []

    assert main([*args, "--skip-corrupt"]) == 0
    printed = capsys.readouterr().out
    assert "23 train images in" in printed and "(unlabeled), skipped 1 corrupt file ->" in printed
    manifest = json.loads((out / "dataset.json").read_text())
    assert sum(s["rows"] for s in manifest["splits"]["train"]) == 23 and len(manifest["splits"]["train"]) > 2


def test_bad_pack_flags(tmp_path, capsys):
    base = ["data", "pack", "--source", "synthetic", "--train-subset", "10", "--out", str(tmp_path / "o")]
    refused(capsys, [*base, "--shard-mb", "0"], "--shard-mb must be in (0, 1024], not 0")
    refused(capsys, [*base, "--shard-mb", "4096"], "--shard-mb must be in (0, 1024], not 4096")
    refused(capsys, [*base, "--skip-corrupt"], "--skip-corrupt applies to --source imagefolder")
    refused(capsys, ["data", "pack", "--source", "imagefolder", "--out", str(tmp_path / "o")], "needs --data-dir")
    assert not (tmp_path / "o").exists()
