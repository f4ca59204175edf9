"""Spaces that cannot make a trustworthy sweep are refused before Ray starts: nothing to search, a space that
picks the monitored split itself, a selection metric that is not a validation metric. Exit 2, one line, nothing
written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ssl_tune.cli import main
from tests.helpers import TINY_FIXED

LR = {"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}}
NARROW_LR = {"lr": {"type": "uniform", "low": 0.01, "high": 0.1}}

REFUSED_SPACES = {
    "empty mapping": ("{}\n", "nothing to search"),
    "empty file": ("", "nothing to search"),
    "bare fixed key": ("fixed:\n", "config key 'fixed'"),  # `fixed: null`: refused, as not a mapping
    "only fixed": (yaml.safe_dump({"fixed": TINY_FIXED}), "nothing to search"),
    "fixed and empty params": (yaml.safe_dump({"fixed": TINY_FIXED, "params": {}}), "nothing to search"),
    "only sweep settings": (yaml.safe_dump({"fixed": TINY_FIXED, "sweep": {"num_samples": 4}}), "nothing to search"),
    "monitor test in fixed": (
        yaml.safe_dump({"fixed": {**TINY_FIXED, "monitor": "test"}, "params": LR}),
        "'monitor' is the sweep's",
    ),
    "monitor val in fixed": (
        yaml.safe_dump({"fixed": {**TINY_FIXED, "monitor": "val"}, "params": LR}),
        "'monitor' is the sweep's",
    ),
    "monitor searched": (
        yaml.safe_dump(
            {"fixed": TINY_FIXED, "params": {**LR, "monitor": {"type": "categorical", "choices": ["val", "test"]}}}
        ),
        "'monitor' is the sweep's",
    ),
    "default outside its range": (  # SimSiam's default lr is 0.5: the first trial could not run the default recipe
        yaml.safe_dump({"fixed": TINY_FIXED, "params": NARROW_LR, "sweep": {"try_default": True}}),
        "try_default: the default lr=0.5 is outside its distribution",
    ),
    "test metric in the file": (
        yaml.safe_dump({"fixed": TINY_FIXED, "params": LR, "sweep": {"metric": "test_knn_acc"}}),
        "sweep.metric",
    ),
}


def _assert_refused(code: int, capsys, expected: str, store) -> None:
    import ray

    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and expected in err, err
    assert err.startswith("ssl-tune sweep: error: ")
    assert "Traceback" not in err
    assert not store.exists()
    assert not ray.is_initialized()


@pytest.mark.parametrize("case", REFUSED_SPACES, ids=list(REFUSED_SPACES))
def test_space_is_refused(case, tmp_path, capsys):
    text, expected = REFUSED_SPACES[case]
    space = tmp_path / "space.yaml"
    space.write_text(text)
    store = tmp_path / "store"
    _assert_refused(main(["sweep", "--space", str(space), "--storage", str(store)]), capsys, expected, store)


REFUSED_FLAGS = {
    "--set monitor=test": (["--set", "monitor=test"], "'monitor' is the sweep's"),
    "--metric test_knn_acc": (["--metric", "test_knn_acc"], "sweep.metric"),
    "--metric loss": (["--metric", "loss"], "sweep.metric"),
}


@pytest.mark.parametrize("case", REFUSED_FLAGS, ids=list(REFUSED_FLAGS))
def test_flags_that_would_select_on_test_are_refused(case, tmp_path, capsys):
    args, expected = REFUSED_FLAGS[case]
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"fixed": TINY_FIXED, "params": LR}))
    store = tmp_path / "store"
    code = main(["sweep", "--space", str(space), "--storage", str(store), *args])
    _assert_refused(code, capsys, expected, store)


def test_trial_configs_always_monitor_the_validation_split():
    """What every trial runs: monitor val, whatever the base config's default."""
    from ssl_tune.tune.space import SearchSpace, check_space

    space = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR})
    check_space(space)
    cfg = space.train_config({"lr": 0.1})
    assert cfg.monitor == "val" and not cfg.rankme and cfg.lr == 0.1
    ranked = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR, "sweep": {"metric": "rankme"}})
    cfg = ranked.train_config({"lr": 0.1})
    assert cfg.monitor == "val" and cfg.rankme


def test_the_default_recipe_is_the_first_point_when_asked():
    from ssl_tune.tune.space import SearchSpace

    fixed = {**{k: v for k, v in TINY_FIXED.items() if k != "method_params"}, "method": "simclr"}
    temperature = {"method_params.temperature": {"type": "uniform", "low": 0.05, "high": 0.5}}
    space = SearchSpace.model_validate(
        {"fixed": fixed, "params": LR | temperature, "points_to_evaluate": [{"lr": 0.3}]}
    )
    assert space.initial_points() == [{"lr": 0.3}]  # off by default
    asked = space.model_copy(update={"sweep": space.sweep.model_copy(update={"try_default": True})})
    default = {"lr": 0.4, "method_params.temperature": 0.2}  # SimCLR's defaults (solo-learn's recipe)
    assert asked.initial_points() == [default, {"lr": 0.3}]


def _without_predictor_lr(space: dict) -> None:
    space["conditional"]["simsiam"].pop("method_params.predictor_lr")


def _all_methods_space(tmp_path, edit) -> str:
    space = yaml.safe_load(Path("search_spaces/all.yaml").read_text())
    space["sweep"]["try_default"] = True
    edit(space)
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


def test_a_conditional_spaces_default_pins_its_methods_parameters(tmp_path):
    """The default recipe of search_spaces/all.yaml is SimSiam's at batch size 256: Optuna, given the default point
    as the sweep's first trial, samples none of SimSiam's conditional keys."""
    import optuna

    from ssl_tune.tune.space import DefineByRun, load_space

    space = load_space(_all_methods_space(tmp_path, _without_predictor_lr))
    default = space.default_point()
    assert default == {"method": "simsiam", "batch_size": 256, "simsiam:lr": 0.5, "simsiam:weight_decay": 1.0e-5}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    for point in space.initial_points():
        study.enqueue_trial(point)
    trial = study.ask()
    DefineByRun(space)(trial)
    assert trial.params == default


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda s: (
                _without_predictor_lr(s)
                or s["conditional"]["simsiam"].update(lr={"type": "uniform", "low": 0.01, "high": 0.1})
            ),
            "try_default: the default simsiam:lr=0.5 is outside its distribution",
        ),
        (
            lambda s: None,  # SimSiam's predictor_lr is None by default: the run's lr, decided when it starts
            "try_default: the default recipe leaves simsiam:method_params.predictor_lr unset",
        ),
    ],
    ids=["outside its range", "unset by the recipe"],
)
def test_try_default_refuses_a_conditional_default_it_cannot_pin(tmp_path, capsys, edit, expected):
    path = _all_methods_space(tmp_path, edit)
    code = main(["sweep", "--space", path, "--storage", str(tmp_path / "store")])
    _assert_refused(code, capsys, expected, tmp_path / "store")


def test_max_epochs_is_the_trials_length_schedules_included():
    """--max-epochs (asha.max_epochs) sets every trial's `epochs`: a trial that reaches it has finished its lr
    schedule, so it completes, and the default recipe and confirm run as long."""
    from ssl_tune.tune.recorder import trial_status
    from ssl_tune.tune.space import SearchSpace

    for max_epochs in (2, 7):  # shorter and longer than the fixed epochs
        space = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR, "asha": {"max_epochs": max_epochs}})
        base = space.train_config({"lr": 0.1})
        assert base.epochs == max_epochs == space.max_epochs(base)
        assert trial_status({"epoch": max_epochs, "status": "ok"}, False, space.max_epochs(base)).value == "completed"
    plain = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR})
    assert plain.train_config({"lr": 0.1}).epochs == TINY_FIXED["epochs"]


def test_searching_epochs_is_refused(tmp_path, capsys):
    space = {"fixed": TINY_FIXED, "params": {**LR, "epochs": {"type": "int", "low": 2, "high": 4}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    code = main(["sweep", "--space", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "store")])
    _assert_refused(code, capsys, "'epochs' is the trials' length", tmp_path / "store")
