"""ASHA whose rungs survive `--resume`.

Tune does not save a scheduler's state with the experiment: `Tuner.restore` unpickles the scheduler as it was
built, with empty rungs. A resumed sweep's ASHA then compares the first trials to reach each rung with nothing,
and lets them all go on: it prunes less than the uninterrupted sweep would. `ResumableASHA` writes its rungs,
and the trials it stopped, to the sweep folder after every decision, and reads them back when Tune unpickles it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from ssl_tune.metrics import SELECTION_MODE
from ssl_tune.storage import exists, join, read_text, write_text
from ssl_tune.tune.space import SearchSpace, is_point

ASHA_STATE_FILE = "asha_state.json"


class ResumableASHA(ASHAScheduler):
    """`ASHAScheduler` (one bracket or several) that keeps its state in `state_path` (a local path or URI)."""

    def __init__(self, state_path: str, exempt: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state_path = state_path
        self.exempt = exempt  # a trial with these params (the default recipe's) is recorded but never stopped
        self._stopped: dict[str, float] = {}  # trial id -> the epoch at which ASHA stopped it
        self._load()

    def __setstate__(self, state: dict[str, Any]) -> None:  # Tuner.restore unpickles the scheduler as built
        self.__dict__.update(state)
        self._load()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.trial_id in self._stopped:  # stopped before an interruption that came before it ended
            return TrialScheduler.STOP
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and self._exempt(trial, result):
            action = TrialScheduler.CONTINUE  # its values still count at the rungs, for the other trials
            self._num_stopped -= 1
        if action == TrialScheduler.STOP:
            self._stopped[trial.trial_id] = float(result.get(self._time_attr, 0))
        self._save()
        return action

    def _exempt(self, trial: Any, result: dict[str, Any]) -> bool:
        """The default recipe's trial, before its last epoch."""
        before_end = float(result.get(self._time_attr, 0)) < self._max_t
        return self.exempt is not None and before_end and is_point(trial.config, self.exempt)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def rungs(self) -> list[list[tuple[float, dict[str, float]]]]:
        """Per bracket, its rungs (highest milestone first): the milestone and the results recorded there."""
        return [[(milestone, dict(recorded)) for milestone, recorded in b._rungs] for b in self._brackets]

    def rung_epochs(self) -> list[int]:
        """The epochs at which ASHA compares trials (a rung at milestone m takes the first result at epoch >= m)."""
        return sorted({math.ceil(milestone) for bracket in self._brackets for milestone, _ in bracket._rungs})

    def _save(self) -> None:
        state = {"rungs": self.rungs(), "stopped": self._stopped, "num_stopped": self._num_stopped}
        write_text(self.state_path, json.dumps(state))

    def _load(self) -> None:
        if not exists(self.state_path):
            return
        state = json.loads(read_text(self.state_path))
        saved = state["rungs"]
        if [[m for m, _ in b] for b in saved] != [[m for m, _ in b._rungs] for b in self._brackets]:
            raise ValueError(f"{self.state_path}: its rungs do not match this scheduler's settings")
        for bracket, rungs in zip(self._brackets, saved, strict=True):
            for (_, recorded), (_, values) in zip(bracket._rungs, rungs, strict=True):
                recorded.clear()
                recorded.update(values)
        self._stopped = dict(state["stopped"])
        self._num_stopped = int(state["num_stopped"])


def sweep_scheduler(space: SearchSpace, sweep_dir: str, max_epochs: int, data_dir: str | None) -> TrialScheduler:
    """The sweep's early stopping: ASHA on the selection metric, its rungs kept in the sweep folder (read back
    on --resume), or none (`early_stopping: none`: every trial runs out). The default recipe's trial
    (`try_default`) runs out: the sweep compares the best trial with it at equal epochs."""
    if space.sweep.early_stopping != "asha":
        return FIFOScheduler()
    return ResumableASHA(
        join(sweep_dir, ASHA_STATE_FILE),
        exempt=space.default_point(data_dir) if space.sweep.try_default else None,
        time_attr="epoch",
        metric=space.sweep.metric,
        mode=SELECTION_MODE,
        max_t=max_epochs,
        grace_period=min(space.asha.grace_period, max_epochs),
        reduction_factor=space.asha.reduction_factor,
    )
