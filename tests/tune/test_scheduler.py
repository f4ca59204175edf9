"""ASHA after --resume decides as the uninterrupted sweep would: a fixed, interleaved sequence of trial results."""

from __future__ import annotations

import pickle

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from ssl_tune.tune.scheduler import ResumableASHA

MAX_EPOCHS, GRACE, FACTOR = 8, 1, 2
# trial id -> its validation kNN per epoch: a spread of learners, some that start well and fade
CURVES = {
    "a": [0.20, 0.30, 0.35, 0.40, 0.42, 0.44, 0.45, 0.46],
    "b": [0.25, 0.26, 0.27, 0.28, 0.29, 0.30, 0.31, 0.32],
    "c": [0.10, 0.15, 0.40, 0.45, 0.50, 0.52, 0.54, 0.55],
    "d": [0.30, 0.31, 0.31, 0.31, 0.31, 0.31, 0.31, 0.31],
    "e": [0.22, 0.33, 0.37, 0.41, 0.43, 0.45, 0.47, 0.48],
    "f": [0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12],
    "g": [0.28, 0.34, 0.36, 0.39, 0.40, 0.41, 0.42, 0.43],
    "h": [0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28],
}


def _trials() -> dict[str, Trial]:
    return {tid: Trial("scripted", config={"lr": ord(tid) / 100}, trial_id=tid, stub=True) for tid in CURVES}


def _new(scheduler_cls, folder, exempt=None):
    kwargs = dict(time_attr="epoch", metric="val_knn_acc", mode="max", max_t=MAX_EPOCHS)
    kwargs |= dict(grace_period=GRACE, reduction_factor=FACTOR)
    if scheduler_cls is ResumableASHA:
        return ResumableASHA(str(folder / "asha_state.json"), exempt=exempt, **kwargs)
    return scheduler_cls(**kwargs)


def _feed(scheduler, trials, events, added: set[str]) -> list[str]:
    """Report `events` ((trial, epoch) in order) to `scheduler` as Tune would; returns its decisions."""
    decisions = []
    for tid, epoch in events:
        if tid not in added:
            scheduler.on_trial_add(None, trials[tid])
            added.add(tid)
        result = {"epoch": epoch, "val_knn_acc": CURVES[tid][epoch - 1]}
        action = scheduler.on_trial_result(None, trials[tid], result)
        if action == TrialScheduler.STOP:
            scheduler.on_trial_remove(None, trials[tid])
        elif epoch == MAX_EPOCHS:
            scheduler.on_trial_complete(None, trials[tid], result)
        decisions.append(action)
    return decisions


def _uninterrupted(scheduler_cls, folder, exempt=None) -> tuple[list[tuple[str, int]], list[str]]:
    """Two trials at a time, in turn, each reporting its next epoch; a slot frees when a trial stops or ends.
    Returns the sequence of results and the decisions."""
    scheduler, trials, added = _new(scheduler_cls, folder, exempt), _trials(), set()
    events, decisions, queue, running = [], [], list(CURVES), {}
    while queue or running:
        while len(running) < 2 and queue:
            running[queue.pop(0)] = 1
        for tid in sorted(running):
            (action,) = _feed(scheduler, trials, [(tid, running[tid])], added)
            events.append((tid, running[tid]))
            decisions.append(action)
            running[tid] += 1
            if action == TrialScheduler.STOP or running[tid] > MAX_EPOCHS:
                del running[tid]
    return events, decisions


def _resumed(scheduler_cls, folder, events, cut: int, exempt=None) -> list[str]:
    """The same results, with the driver killed after `cut` of them: the sweep resumes with the scheduler as it
    was built (Tuner pickles it before the run), and each trial still running replays its last epoch (it
    restarts from that epoch's checkpoint) before the remaining results arrive."""
    built = pickle.dumps(_new(scheduler_cls, folder, exempt))
    trials = _trials()
    before = _feed(pickle.loads(built), trials, events[:cut], set())
    ended = {t for (t, e), a in zip(events[:cut], before, strict=True) if a == TrialScheduler.STOP or e == MAX_EPOCHS}
    last = {t: e for t, e in events[:cut] if t not in ended}
    resumed, added = pickle.loads(built), set()
    _feed(resumed, trials, sorted(last.items()), added)  # the replays
    return before + _feed(resumed, trials, events[cut:], added)


def test_a_resumed_sweep_stops_the_same_trials_as_an_uninterrupted_one(tmp_path):
    events, decisions = _uninterrupted(ResumableASHA, tmp_path)
    early = {t for (t, e), a in zip(events, decisions, strict=True) if a == TrialScheduler.STOP and e < MAX_EPOCHS}
    assert 2 <= len(early) < len(CURVES)  # the sequence exercises ASHA
    for cut in range(1, len(events)):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        assert _resumed(ResumableASHA, folder, events, cut) == decisions, cut


def test_the_default_recipes_trial_is_never_stopped_also_after_a_resume(tmp_path):
    """`try_default`: ASHA records the default's values at its rungs but lets it run to the end, and a resumed
    sweep decides the same at every cut."""
    worst = {"lr": ord("f") / 100}  # trial f has the lowest curve: ASHA stops it at its first rung otherwise
    (tmp_path / "plain").mkdir()
    (tmp_path / "exempt").mkdir()
    plain_events, plain = _uninterrupted(ResumableASHA, tmp_path / "plain")
    assert ("f", 1, TrialScheduler.STOP) in [(*ev, a) for ev, a in zip(plain_events, plain, strict=True)]
    events, decisions = _uninterrupted(ResumableASHA, tmp_path / "exempt", exempt=worst)
    assert [e for t, e in events if t == "f"] == list(range(1, MAX_EPOCHS + 1))
    f_decisions = [a for (t, e), a in zip(events, decisions, strict=True) if t == "f" and e < MAX_EPOCHS]
    assert set(f_decisions) == {TrialScheduler.CONTINUE}
    assert decisions.count(TrialScheduler.STOP) >= 3  # the others are still pruned
    for cut in range(1, len(events)):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        assert _resumed(ResumableASHA, folder, events, cut, exempt=worst) == decisions, cut


def test_tunes_own_asha_prunes_less_after_a_resume(tmp_path):
    """The failure this fixes: Ray's ASHA restarts with empty rungs."""
    events, decisions = _uninterrupted(ASHAScheduler, tmp_path)
    resumed = _resumed(ASHAScheduler, tmp_path, events, cut=len(events) // 2)
    assert resumed.count(TrialScheduler.STOP) < decisions.count(TrialScheduler.STOP)


def test_the_state_file_refuses_other_asha_settings(tmp_path):
    _uninterrupted(ResumableASHA, tmp_path)
    other = dict(time_attr="epoch", metric="val_knn_acc", mode="max", max_t=MAX_EPOCHS, grace_period=2)
    with pytest.raises(ValueError, match="do not match"):
        ResumableASHA(str(tmp_path / "asha_state.json"), **other, reduction_factor=FACTOR)


def test_a_stop_decided_just_before_the_kill_still_stops_the_trial_after_resume(tmp_path):
    """The driver was killed after ASHA stopped a trial but before Tune ended it: the resumed trial replays that
    epoch, and is stopped again (its result is already in the rung, so the rungs alone would let it go on)."""
    events, decisions = _uninterrupted(ResumableASHA, tmp_path / "whole")
    cut = next(
        i + 1
        for i, ((_, e), a) in enumerate(zip(events, decisions, strict=True))
        if a == TrialScheduler.STOP and e < MAX_EPOCHS
    )
    (tmp_path / "cut").mkdir()
    built = pickle.dumps(_new(ResumableASHA, tmp_path / "cut"))
    trials = _trials()
    _feed(pickle.loads(built), trials, events[:cut], set())
    assert _feed(pickle.loads(built), trials, [events[cut - 1]], set()) == [TrialScheduler.STOP]


def test_rung_epochs_are_the_schedulers_milestones(tmp_path):
    kwargs = dict(time_attr="epoch", metric="val_knn_acc", mode="max")
    assert ResumableASHA(
        str(tmp_path / "a.json"), max_t=20, grace_period=4, reduction_factor=2, **kwargs
    ).rung_epochs() == [4, 8, 16]
    assert ResumableASHA(
        str(tmp_path / "b.json"), max_t=8, grace_period=1, reduction_factor=3, **kwargs
    ).rung_epochs() == [1, 3]
