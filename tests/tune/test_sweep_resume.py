"""An interrupted sweep resumes: finished trials are not rerun, and the Optuna history is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from ssl_tune.tune.results import END_FILE, load_sweep
from tests.helpers import REPO, TINY_FIXED, run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster or trains for several epochs

NUM_SAMPLES = 5


def _ended(sweep_dir):
    return sorted(p.parent for p in sweep_dir.glob(f"trial-*/{END_FILE}"))


# SIGKILL only: the harder case (no clean stop; the killed driver's local Ray cluster lingers). A SIGINT'ed
# driver's exit code 130 and resume hint go through the same `Interrupted` path that `confirm`'s resume test
# exercises with a SIGINT (tests/tune/test_sweep.py); running both variants cost 3 minutes of CI.
@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["sigkill"])
def test_interrupted_driver_then_resume_completes_the_sweep_without_rerunning_finished_trials(tmp_path, sig):
    sweep_settings = {"num_samples": NUM_SAMPLES, "cpus_per_worker": 1, "try_default": True}
    space = write_space(tmp_path / "space.yaml", sweep=sweep_settings)
    store, sweep_dir = tmp_path / "store", tmp_path / "store" / "resumable"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
    args = sweep_cmd("--space", str(space), "--storage", str(store), "--name", "resumable")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while len(_ended(sweep_dir)) < 2:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, "no trial finished in time"
            time.sleep(0.5)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:  # a clean stop that says how to resume
        assert proc.returncode == 130, output[-3000:]
        assert "--resume" in output
    else:
        assert proc.returncode == -signal.SIGKILL  # its local Ray cluster lingers: the resume must cope

    before = {d.name: ((d / "result.json").read_text(), (d / END_FILE).stat().st_mtime_ns) for d in _ended(sweep_dir)}
    assert 2 <= len(before) < NUM_SAMPLES

    resumed = run_cli(sweep_cmd("--storage", str(store), "--name", "resumable", "--resume"))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    sweep = load_sweep(str(sweep_dir))
    assert len(sweep.trials) == NUM_SAMPLES
    assert all(t.status in ("completed", "stopped") for t in sweep.trials), [t.status for t in sweep.trials]
    for name, (results, mtime) in before.items():
        assert (sweep_dir / name / "result.json").read_text() == results, f"{name} ran again"
        assert (sweep_dir / name / END_FILE).stat().st_mtime_ns == mtime, f"{name} ran again"
    default = sweep.default_trial()  # ASHA, restored on --resume, still lets the default recipe run to the end
    assert default is not None and default.status == "completed" and default.epochs_run == TINY_FIXED["epochs"]
    for t in sweep.trials:  # trials cut short resumed from their checkpoints: each epoch reported once
        epochs = [r["epoch"] for r in t.results]
        assert epochs == sorted(set(epochs)), (t.trial_id, epochs)

    study = optuna.load_study(
        study_name="resumable", storage=JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    )
    # an Optuna trial asked for after the killed driver's last snapshot has no Tune trial: it is marked failed
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states, states
    kept = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(kept) == NUM_SAMPLES, states
    assert sorted(t.params["lr"] for t in kept) == sorted(t.params["lr"] for t in sweep.trials)
