"""Where CIFAR-10 is found without --data-dir (`ssl_tune.data.locate`): $SSL_TUNE_DATASETS, a shared folder, the
user cache, a one-time download into it, else one line naming all three. No test here touches the network: the
download is a stand-in that writes the marker file, or one that fails as urllib does without a network."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest

from ssl_tune.cli import main
from ssl_tune.data.locate import ENV_VAR, find_datasets, user_cache
from ssl_tune.errors import UsageError

MARKER = "cifar-10-batches-py/data_batch_1"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _holding(folder: Path) -> Path:
    (folder / MARKER).parent.mkdir(parents=True)
    (folder / MARKER).write_bytes(b"x")
    return folder


def _offline(folder: Path) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_the_search_order_is_env_then_shared_then_cache(monkeypatch, tmp_path):
    env, shared, cache = _holding(tmp_path / "env"), _holding(tmp_path / "shared"), _holding(user_cache())
    assert cache == tmp_path / "cache" / "ssl-tune" / "datasets"
    assert find_datasets(MARKER, candidates=[shared]) == shared
    assert find_datasets(MARKER, candidates=[tmp_path / "absent"]) == cache
    monkeypatch.setenv(ENV_VAR, str(env))
    assert find_datasets(MARKER, candidates=[shared], fetch=_offline) == env


def test_a_folder_without_the_batches_is_passed_over(monkeypatch, tmp_path):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert find_datasets(MARKER, candidates=[_holding(tmp_path / "shared")]) == tmp_path / "shared"


def test_the_download_fills_the_user_cache_once(tmp_path):
    calls = []

    def fetch(folder: Path) -> None:
        calls.append(folder)
        _holding(folder)

    assert find_datasets(MARKER, candidates=[tmp_path / "absent"], fetch=fetch) == user_cache()
    assert find_datasets(MARKER, candidates=[tmp_path / "absent"], fetch=fetch) == user_cache()
    assert calls == [user_cache()]


def test_without_network_one_line_names_all_three_places(tmp_path):
    with pytest.raises(UsageError) as caught:
        find_datasets(MARKER, candidates=[tmp_path / "shared"], fetch=_offline)
    message = str(caught.value)
    assert "\n" not in message
    for part in (f"${ENV_VAR} (unset)", str(tmp_path / "shared"), str(user_cache()), "Temporary failure"):
        assert part in message, message


def test_the_cli_finds_cifar_through_the_env_var_and_refuses_in_one_line(monkeypatch, tmp_path, capsys, cifar_dir):
    args = ["bench", "--method", "simsiam", "--backbone", "resnet_tiny", "--dataset", "cifar10", "--steps", "1"]
    args += ["--warmup", "0", "--batch-size", "32", "--train-subset", "64", "--test-subset", "32", "--repeats", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs --data-dir" in err and f"${ENV_VAR} (unset)" in err, err
    assert "no download asked for" in err
    monkeypatch.setenv(ENV_VAR, str(cifar_dir))
    assert main(args) == 0, capsys.readouterr().err
