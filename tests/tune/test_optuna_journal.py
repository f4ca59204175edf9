"""The sweep's Optuna searcher on a real journal: user attrs joining Optuna trials to Tune trials, and the journal's
copy in a bucket sweep's dir (here a local folder standing in for the bucket: same code past the URI check)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ssl_tune.tune import searcher as searcher_module
from ssl_tune.tune.searcher import (
    END_STATE,
    OPTUNA_FILE,
    TUNE_TRIAL_ID,
    SSLOptunaSearch,
    fetch_optuna_journal,
    pull_journal,
    push_journal,
    sync_optuna_journal,
)

MAX_EPOCHS = 3


def _space(trial) -> None:
    trial.suggest_float("lr", 1e-3, 1.0, log=True)


def _searcher(journal: Path, copy: Path | None = None) -> SSLOptunaSearch:
    return SSLOptunaSearch(
        space=_space,
        metric="val_knn_acc",
        mode="max",
        seed=0,
        study_name="s",
        storage=JournalStorage(JournalFileBackend(str(journal))),
        max_epochs=MAX_EPOCHS,
        journal=str(journal),
        journal_copy=str(copy) if copy else None,
    )


def _trials(journal: Path) -> dict[str, optuna.trial.FrozenTrial]:
    """The study's trials by Tune trial id, read back from the journal file by a fresh storage."""
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(journal))))
    return {t.user_attrs[TUNE_TRIAL_ID]: t for t in study.trials}


def test_each_optuna_trial_carries_its_tune_trial_and_end_state(tmp_path):
    journal = tmp_path / OPTUNA_FILE
    search = _searcher(journal)
    ends = {
        "t_completed": ({"epoch": 3, "status": "ok", "val_knn_acc": 0.5}, False),
        "t_stopped": ({"epoch": 1, "status": "ok", "val_knn_acc": 0.3}, False),
        "t_diverged": ({"epoch": 2, "status": "diverged", "val_knn_acc": math.nan}, False),
        "t_collapsed": ({"epoch": 2, "status": "collapsed", "val_knn_acc": 0.1}, False),
        "t_error": (None, True),
    }
    for trial_id in ends:
        assert search.suggest(trial_id) is not None
    assert {k: t.state for k, t in _trials(journal).items()} == dict.fromkeys(ends, TrialState.RUNNING)
    for trial_id, (result, error) in ends.items():
        search.on_trial_complete(trial_id, result=result, error=error)
    search.on_trial_complete("t_completed", result={"epoch": 3, "status": "ok", "val_knn_acc": 0.9})  # ignored

    trials = _trials(journal)
    assert {k: t.user_attrs[END_STATE] for k, t in trials.items()} == {k: k.removeprefix("t_") for k in ends}
    assert trials["t_completed"].value == 0.5 and trials["t_completed"].state is TrialState.COMPLETE
    assert trials["t_diverged"].state is TrialState.FAIL and trials["t_error"].state is TrialState.FAIL


def test_user_attrs_survive_a_restored_searcher(tmp_path):
    journal = tmp_path / OPTUNA_FILE
    search = _searcher(journal)
    search.suggest("a")
    search.suggest("b")
    search.on_trial_complete("a", result={"epoch": 3, "status": "ok", "val_knn_acc": 0.5})
    state = tmp_path / "searcher-state.pkl"
    search.save(str(state))

    resumed = _searcher(journal)  # as --resume: Tune restores the saved searcher state
    resumed.restore(str(state))
    resumed.on_trial_complete("b", result={"epoch": 1, "status": "ok", "val_knn_acc": 0.2})
    resumed.suggest("c")
    trials = _trials(journal)
    assert {k: t.user_attrs.get(END_STATE) for k, t in trials.items()} == {"a": "completed", "b": "stopped", "c": None}
    assert trials["c"].state is TrialState.RUNNING


def test_the_journal_is_copied_at_snapshots_throttled(tmp_path, monkeypatch):
    journal, copy = tmp_path / "driver" / "s.journal", tmp_path / "bucket" / "sweep" / OPTUNA_FILE
    journal.parent.mkdir()
    search = _searcher(journal, copy)
    search.suggest("a")
    search.save(str(tmp_path / "state.pkl"))  # Tune's experiment snapshot
    assert copy.read_bytes() == journal.read_bytes()
    assert [p.name for p in copy.parent.iterdir()] == [OPTUNA_FILE]  # written atomically: no temporary file left

    search.on_trial_complete("a", result={"epoch": 3, "status": "ok", "val_knn_acc": 0.5})
    search.save(str(tmp_path / "state.pkl"))  # seconds later: throttled
    assert copy.stat().st_size < journal.stat().st_size
    assert search.sync_journal(force=True)  # the final copy
    assert copy.read_bytes() == journal.read_bytes()
    assert not search.sync_journal(force=True)  # nothing new to copy

    monkeypatch.setattr(searcher_module, "JOURNAL_SYNC_S", 0.0)
    search.suggest("b")
    search.save(str(tmp_path / "state.pkl"))  # past the throttle
    assert copy.read_bytes() == journal.read_bytes()
    assert set(_trials(copy)) == {"a", "b"}  # the copy is a journal Optuna (and optuna-dashboard) opens


def test_push_copies_whole_lines_and_reports_failures(tmp_path, caplog):
    journal = tmp_path / "j"
    journal.write_bytes(b'{"op_code": 0}\n{"op_co')  # a line being appended
    assert push_journal(str(journal), str(tmp_path / "out" / OPTUNA_FILE))
    assert (tmp_path / "out" / OPTUNA_FILE).read_bytes() == b'{"op_code": 0}\n'
    (tmp_path / "file").write_text("x")
    assert not push_journal(str(journal), str(tmp_path / "file" / OPTUNA_FILE))  # its folder is a file
    assert "could not copy the Optuna journal" in caplog.text


def test_pull_fetches_the_copy_only_when_it_is_longer(tmp_path):
    copy, journal = tmp_path / "bucket" / OPTUNA_FILE, tmp_path / "home" / "optuna" / "s.journal"
    assert not pull_journal(str(copy), str(journal))  # no copy yet (a new sweep)
    copy.parent.mkdir()
    copy.write_text("1\n2\n")
    assert pull_journal(str(copy), str(journal))  # --resume on a machine without the local journal
    assert journal.read_text() == "1\n2\n"
    assert not pull_journal(str(copy), str(journal))  # already there
    journal.write_text("1\n2\n3\n")
    assert not pull_journal(str(copy), str(journal))  # the local one is ahead (the copy lags by seconds)
    assert journal.read_text() == "1\n2\n3\n"
    copy.write_text("1\n2\n3\n4\n")
    assert pull_journal(str(copy), str(journal))  # the sweep ran on elsewhere since
    assert journal.read_text() == "1\n2\n3\n4\n"


@pytest.mark.parametrize("sweep_dir", ["sweeps/s", "file:///tmp/sweeps/s"])
def test_a_local_sweep_keeps_its_journal_in_place(sweep_dir):
    assert not fetch_optuna_journal(sweep_dir, "s") and not sync_optuna_journal(sweep_dir, "s")


def test_a_new_bucket_sweep_never_inherits_a_local_journal(tmp_path, monkeypatch):
    """A bucket sweep keeps its journal on the driver's disk, one file per sweep folder: another folder's sweep of
    the same name has its own, and a new sweep where an old one was deleted starts its study empty (the history
    of the old one would steer its sampler)."""
    import yaml

    from ssl_tune.tune.searcher import optuna_journal_path, sweep_searcher
    from ssl_tune.tune.space import SearchSpace
    from tests.helpers import write_space
    from tests.s3_server import BUCKET, s3_server

    monkeypatch.setenv("HOME", str(tmp_path))
    sweep_dir = f"s3://{BUCKET}/sweeps/same"
    assert optuna_journal_path(sweep_dir, "same") != optuna_journal_path(f"s3://{BUCKET}/other/same", "same")
    stale = Path(optuna_journal_path(sweep_dir, "same"))
    stale.parent.mkdir(parents=True)
    old = optuna.create_study(study_name="same", storage=JournalStorage(JournalFileBackend(str(stale))))
    old.optimize(lambda trial: trial.suggest_float("lr", 0.01, 1.0), n_trials=3)

    space = SearchSpace.model_validate(yaml.safe_load(write_space(tmp_path / "space.yaml").read_text()))
    with s3_server() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        searcher = sweep_searcher(space, sweep_dir, "same", None, MAX_EPOCHS)
    assert searcher._ot_study.trials == []
