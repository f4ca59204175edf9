"""What `ssl-tune confirm` prints per run event (ConfirmEvents), driven with stand-ins for Tune's trials."""

from __future__ import annotations

import re
from types import SimpleNamespace

import cloudpickle
from ray.tune.experiment import Trial

from ssl_tune.tune.devices import GpuUnavailable
from ssl_tune.tune.progress import ConfirmEvents, TrialEvents
from ssl_tune.tune.worker import EVAL_PREFIX


def _trial(run: int, status: str = Trial.RUNNING, last: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"abc0{run}", config={"run": run}, status=status, last_result=last or {})


def test_confirm_prints_a_line_per_run_event_and_a_summary(capsys):
    events = ConfirmEvents(["trial 3f2a9c01, seed 2", "default recipe, seed 1"], max_epochs=3, every_s=0.0)
    events.setup()
    first, second = _trial(0), _trial(1)
    events.on_trial_start(0, [first, second], first)
    final = {"epoch": 3, f"{EVAL_PREFIX}test_knn_acc": 0.41234, f"{EVAL_PREFIX}probe_top1": 0.451, "done": True}
    first.status, first.last_result = Trial.TERMINATED, final
    events.on_trial_result(1, [first, second], second, {"epoch": 1})
    events.on_trial_complete(2, [first, second], first)
    second.last_result = {"epoch": 0}
    events.on_trial_error(3, [first, second], second)

    lines = [re.sub(r"^\[ *\d+s\] ", "", line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "run 0 started  (trial 3f2a9c01, seed 2)",
        "1 running, 1 of 2 done",  # counted from Tune's trials: `second` runs, `first` has ended
        "run 0 completed at epoch 3  test kNN 41.23%, probe top-1 45.10%",
        "run 1 error at epoch 0: see its error.txt",  # a stand-in without an error file
    ]


def test_a_run_that_stopped_before_its_evaluation_shows_no_numbers(capsys):
    events = ConfirmEvents(["trial 3f2a9c01, seed 2"], max_epochs=3)
    events.on_trial_complete(0, [], _trial(0, Trial.TERMINATED, {"epoch": 2, "status": "diverged"}))
    assert capsys.readouterr().out.rstrip().endswith("] run 0 diverged at epoch 2")


class _TaskError(Exception):
    """As Ray wraps a trial's error: its own message carries the traceback, the original is its `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("Traceback (most recent call last):\n  ...\nray::ImplicitFunc.train()")
        self.cause = cause


def test_a_failed_trial_says_why_in_its_line(capsys, tmp_path):
    events = TrialEvents("val_knn_acc", rungs=[], max_epochs=3, total=1)
    trial = _trial(0, Trial.ERROR, {"epoch": 0})
    error = GpuUnavailable("trial abc00 reserved a GPU, but torch sees none\nmore detail")
    trial.pickled_error_file = str(tmp_path / "error.pkl")  # as Tune writes it
    (tmp_path / "error.pkl").write_bytes(cloudpickle.dumps(_TaskError(error)))
    events.on_trial_error(0, [trial], trial)
    line = capsys.readouterr().out.strip()
    assert line.endswith(
        "trial abc00 error at epoch 0: GpuUnavailable: trial abc00 reserved a GPU, but torch sees none"
    )
