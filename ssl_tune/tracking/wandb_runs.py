"""Weights & Biases: a run per trained run or sweep trial.

All runs of a sweep are logged from the driver, through `wandb.init(reinit="create_new")` (several runs in one
process, each streamed by W&B's own service process), with W&B's run id = the Tune trial id. Ray's
`WandbLoggerCallback` is not used: it starts two Ray actors per trial (a queue and a logging process) and
blocks the Tune loop on the queue while they start; built on it, two of the six runs of the 6-trial test
sweep on the 2-core VM held no epoch (their processes never got through their queues before the sweep ended).
`WANDB_MODE=offline` keeps everything in local `wandb/` folders (`wandb sync` uploads them later);
`WANDB_PROJECT` / `WANDB_ENTITY` stand in for the flags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ssl_tune.metrics import TrialStatus
from ssl_tune.tracking import END_STATE, RunIdentity, TrackingSettings, flat_params

DEFAULT_PROJECT = "ssl-tune"


def project_of(settings: TrackingSettings) -> str:
    return settings.wandb_project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


def entity_of(settings: TrackingSettings) -> str | None:
    return settings.wandb_entity or os.environ.get("WANDB_ENTITY") or None


class WandbRun:
    """One W&B run in this process: config once, a history row per epoch (with `epoch`), `end_state`."""

    tracker = "wandb"

    def __init__(self, run: Any, project: str, entity: str | None, group: str) -> None:
        self.run, self.project, self.entity, self.group = run, project, entity, group

    @classmethod
    def open(
        cls,
        settings: TrackingSettings,
        identity: RunIdentity,
        params: dict[str, Any],
        previous: dict[str, Any] | None = None,
        folder: Path | None = None,
        quiet: bool = False,
    ) -> WandbRun:
        """Continue the run of `previous` (tracking.json) or identity.run_id, or start it; local files in
        `folder`/wandb. `quiet`: no console capture and no banners (a sweep's trials, logged from the driver)."""
        import wandb

        known = (previous or {}).get("wandb") or {}
        project = known.get("project") or project_of(settings)
        entity = known.get("entity") or entity_of(settings)
        group = known.get("group") or identity.experiment
        run = wandb.init(
            project=project,
            entity=entity,
            group=group,
            name=identity.name,
            id=known.get("id") or identity.run_id,
            job_type=identity.stage,
            config=flat_params(params),
            resume="allow",
            dir=str(folder) if folder is not None else None,
            reinit="create_new",  # several runs at once in one process (a sweep's driver)
            settings=wandb.Settings(console="off", quiet=True) if quiet else None,
        )
        return cls(run, project, entity, group)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, "epoch": step})

    def end(self, state: str | None) -> None:
        if state is not None:
            self.run.summary[END_STATE] = state
        self.run.finish(exit_code=1 if state in (TrialStatus.ERROR.value, TrialStatus.UNFINISHED.value) else 0)

    def record(self) -> dict[str, Any]:
        return {"tracker": self.tracker, "project": self.project, "entity": self.entity, "group": self.group,
                "id": self.run.id}  # fmt: skip
