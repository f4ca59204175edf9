"""The sweep's Optuna searcher: Ray's OptunaSearch, with diverged and orphaned trials told to Optuna as failed,
each Optuna trial tagged with its Tune trial and how it ended; its seeded sampler; and its journal storage, which
sits in the sweep folder, or for a bucket sweep on the driver's disk, copied to the bucket."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from ssl_tune.metrics import SELECTION_MODE
from ssl_tune.storage import atomic_write, filesystem, is_uri, join, read_text, write_text
from ssl_tune.tune.recorder import trial_status
from ssl_tune.tune.space import DefineByRun, SearchSpace, SweepSettings

logger = logging.getLogger(__name__)

TUNE_TRIAL_ID = "tune_trial_id"  # Optuna user attrs: the Tune trial (its folder is trial-<id>) ...
END_STATE = "end_state"  # ... and how it ended: completed / stopped / diverged / collapsed / error
JOURNAL_SYNC_S = 10.0  # copy the journal at most this often while the sweep runs
OPTUNA_FILE = "optuna.journal"  # in the sweep folder


def optuna_sampler(settings: SweepSettings) -> Any:
    """The sweep's Optuna sampler, seeded: TPE, or random search (`sweep.searcher`). TPE's first
    `tpe_startup_trials` draw from a RandomSampler with the same seed, so with the same seed both strategies
    start from the same points."""
    import optuna

    if settings.searcher == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.tpe_startup_trials)


def optuna_journal_path(sweep_dir: str, name: str) -> str:
    """The Optuna journal sits in the sweep dir; for cloud storage it stays on the driver's disk, and is copied to
    <sweep_dir>/optuna.journal (by the searcher at its snapshots, throttled, and at the end of the sweep)."""
    if not is_uri(sweep_dir):
        return join(sweep_dir, OPTUNA_FILE)
    where = hashlib.blake2b(sweep_dir.partition("?")[0].encode(), digest_size=6).hexdigest()  # one per sweep dir
    return str(Path("~/.ssl-tune/optuna").expanduser() / f"{name}-{where}.journal")


def fetch_optuna_journal(sweep_dir: str, name: str) -> bool:
    """A bucket sweep's journal: fetch the sweep dir's copy to the driver's disk if the local one is missing or
    shorter (--resume on another machine). Returns whether it fetched."""
    if not is_uri(sweep_dir):
        return False
    return pull_journal(join(sweep_dir, OPTUNA_FILE), optuna_journal_path(sweep_dir, name))


def sync_optuna_journal(sweep_dir: str, name: str) -> bool:
    """A bucket sweep's journal: copy the driver's local journal to the sweep dir now. Returns whether it did."""
    journal = optuna_journal_path(sweep_dir, name)
    if not is_uri(sweep_dir) or not Path(journal).exists():
        return False
    return push_journal(journal, join(sweep_dir, OPTUNA_FILE))


def _optuna_storage(sweep_dir: str, name: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    fetch_optuna_journal(sweep_dir, name)  # before the storage opens it
    path = Path(optuna_journal_path(sweep_dir, name))
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def push_journal(journal: str, copy: str) -> bool:
    """Copy the local Optuna journal to `copy` (a URI or a path) in one atomic write; False (logged) on failure."""
    try:
        data = Path(journal).read_bytes()
        data = data[: data.rfind(b"\n") + 1]  # whole log lines only
        write_text(copy, data.decode())
        return True
    except OSError as err:
        logger.warning(f"could not copy the Optuna journal to {copy}: {err}")
        return False


def pull_journal(copy: str, journal: str) -> bool:
    """Fetch the journal's copy at `copy` to `journal` when the copy is longer (the journal only grows): on
    --resume on a machine that lacks the local journal, or holds an older one. Returns whether it fetched."""
    fs, path = filesystem(copy)
    info = fs.get_file_info(path)
    local = Path(journal)
    if info.size is None or (local.exists() and local.stat().st_size >= info.size):
        return False
    text = read_text(copy)
    atomic_write(local, lambda f: f.write(text.encode()))
    return True


class SSLOptunaSearch(OptunaSearch):
    """Tells Optuna FAIL for a trial whose last metric is NaN (diverged), so the sampler steers away.

    Ray's OptunaSearch would tell COMPLETE with NaN, which Optuna rejects, leaving the trial RUNNING.
    Every Optuna trial carries the user attrs `tune_trial_id` and `end_state`. With `journal_copy`, each save of
    the searcher's state (every experiment snapshot) also copies the `journal` file there, throttled.
    """

    # defaults for a searcher pickled before these existed (a sweep resumed across an upgrade)
    _max_epochs: int | None = None
    _journal: str | None = None
    _journal_copy: str | None = None
    _journal_synced: tuple[float, int] = (0.0, -1)  # (when, size) of the last copy

    def __init__(
        self,
        *args: Any,
        max_epochs: int,
        journal: str | None = None,
        journal_copy: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._journal = journal
        self._journal_copy = journal_copy
        self._journal_synced = (0.0, -1)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        new = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        if new and trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ID, trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and trial_id not in self._completed_trials and self._max_epochs is not None:
            state = trial_status(result or {}, error, self._max_epochs)
            with suppress(UpdateFinishedTrialError):  # told before a killed driver's last snapshot; resumed since
                ot_trial.set_user_attr(END_STATE, state.value)
        value = (result or {}).get(self._metric)
        if isinstance(value, float) and not math.isfinite(value):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        super().save(checkpoint_path)
        self.sync_journal()

    def sync_journal(self, force: bool = False) -> bool:
        """Copy the journal to `journal_copy` if it grew, at most every JOURNAL_SYNC_S unless `force`."""
        if not self._journal or not self._journal_copy:
            return False
        when, size = self._journal_synced
        now = time.time()
        if not force and now - when < JOURNAL_SYNC_S:
            return False
        try:
            current = Path(self._journal).stat().st_size
        except OSError:
            return False
        if current == size or not push_journal(self._journal, self._journal_copy):
            return False
        self._journal_synced = (now, current)
        return True

    def restore(self, checkpoint_path: str) -> None:
        """On --resume: an Optuna trial asked for after the killed driver's last snapshot of the sweep belongs to
        no Tune trial and would stay RUNNING in the study forever: tell Optuna it failed."""
        super().restore(checkpoint_path)
        self._journal_synced = (0.0, -1)  # this driver has copied nothing yet
        known = {trial.number for trial in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in known:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL)


def sweep_searcher(
    space: SearchSpace, sweep_dir: str, name: str, data_dir: str | None, max_epochs: int
) -> SSLOptunaSearch:
    """A new sweep's searcher: the space as Optuna's define-by-run, its initial points first, the study in the
    sweep's journal (a bucket sweep's local journal left by an earlier sweep of the same folder is removed: the
    checks found no sweep there, so its history is not this sweep's)."""
    if is_uri(sweep_dir):
        Path(optuna_journal_path(sweep_dir, name)).unlink(missing_ok=True)
    s = space.sweep
    return SSLOptunaSearch(
        space=DefineByRun(space),
        metric=s.metric,
        mode=SELECTION_MODE,
        sampler=optuna_sampler(s),
        study_name=name,
        storage=_optuna_storage(sweep_dir, name),
        points_to_evaluate=space.initial_points(data_dir) or None,
        max_epochs=max_epochs,
        journal=optuna_journal_path(sweep_dir, name),
        journal_copy=join(sweep_dir, OPTUNA_FILE) if is_uri(sweep_dir) else None,
    )
