"""MLflow: a run per trained run or sweep trial, through MLflow's client API.

Ray's `MLflowLoggerCallback` is not used: it logs every key of Tune's result (pids, hostnames, timers) at
step = training iteration, records no end state beyond FINISHED / FAILED, and on `--resume` starts a second
run for each unfinished trial. A sweep's trials (`ssl_tune.tune.trackers`) log the metrics that TensorBoard
shows at step = epoch and tag the end state; `MLflowRun.open` finds a resumed trial's run again by its
trial-id tag.
"""

from __future__ import annotations

import time
from typing import Any

from ssl_tune.metrics import TrialStatus
from ssl_tune.tracking import END_STATE, STAGE_TAG, TRIAL_ID_TAG, RunIdentity, flat_params

_STATUS = {TrialStatus.ERROR.value: "FAILED", TrialStatus.UNFINISHED.value: "KILLED"}  # other ends: FINISHED


class MLflowRun:
    """One MLflow run: params once, metric histories (step = epoch), the end state as a tag."""

    tracker = "mlflow"

    def __init__(self, client: Any, uri: str, experiment_id: str, run_id: str, status: str = "FINISHED") -> None:
        self.client, self.uri, self.experiment_id, self.run_id = client, uri, experiment_id, run_id
        self.previous_status = status  # what an `eval` that reopens a finished run restores

    @classmethod
    def open(
        cls, uri: str, identity: RunIdentity, params: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> MLflowRun:
        """Continue the run named in `previous` (a tracking.json record), or the experiment's run of the same
        trial id and stage (a resumed sweep), or start one."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        known = (previous or {}).get("mlflow") or {}
        if known.get("uri") == uri and _exists(client, known.get("run_id")):
            run = client.get_run(known["run_id"])
        else:
            found = client.get_experiment_by_name(identity.experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(identity.experiment)
            tags = {TRIAL_ID_TAG: identity.run_id, STAGE_TAG: identity.stage}
            query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
            same = client.search_runs([experiment_id], filter_string=query, max_results=1)
            run = same[0] if same else client.create_run(experiment_id, run_name=identity.name, tags=tags)
        if run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
        self = cls(client, uri, run.info.experiment_id, run.info.run_id, run.info.status)
        self.log_params(params, already=run.data.params)
        return self

    def log_params(self, params: dict[str, Any], already: dict[str, str] | None = None) -> None:
        """Params are write-once in MLflow: those the run already has are left as they are."""
        from mlflow.entities import Param

        new = {k: str(v) for k, v in flat_params(params).items() if k not in (already or {})}
        items = [Param(k, v) for k, v in new.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit for params
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def end(self, state: str | None) -> None:
        if state is None:  # eval: back to how the run had ended
            status = self.previous_status if self.previous_status != "RUNNING" else "FINISHED"
        else:
            self.client.set_tag(self.run_id, END_STATE, state)
            status = _STATUS.get(state, "FINISHED")
        self.client.set_terminated(self.run_id, status=status)

    def record(self) -> dict[str, Any]:
        return {"tracker": self.tracker, "uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.run_id}


def _exists(client: Any, run_id: str | None) -> bool:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True
