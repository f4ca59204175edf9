"""`ssl-tune report` on a real finished sweep (local Ray, real Optuna): PNGs, one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import re
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ssl_tune.cli import main
from ssl_tune.tune.report import HTML_FILE, IMPORTANCE_PLOT, KNN_PLOT, PARAMS_PLOT, STATUS_LABEL, STATUS_STYLE
from ssl_tune.tune.results import load_sweep
from tests.helpers import run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster or trains for several epochs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """Four 2-epoch trials. Two categorical parameters make trials end in different ways: a NaN injected in
    epoch 1 (diverged), a collapse threshold above any healthy embedding std ratio (0.98 to 1.02: collapsed), and
    neither (completed, or stopped by ASHA). With seed 6 Optuna draws one diverged, one collapsed and two
    healthy trials."""
    root = tmp_path_factory.mktemp("report")
    space = write_space(
        root / "mixed.yaml",
        fixed={"epochs": 2},
        params={
            "collapse_std_threshold": {"type": "categorical", "choices": [0.0, 1.5]},
            "inject_nan_from_epoch": {"type": "categorical", "choices": [1, 1000]},
        },
        sweep={"num_samples": 4, "seed": 6},
    )
    proc = run_cli(sweep_cmd("--space", str(space), "--storage", str(root / "store"), "--name", "mixed"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "store" / "mixed"


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_report_writes_valid_pngs_and_one_self_contained_page(sweep_dir, tmp_path, capsys):
    sweep = load_sweep(str(sweep_dir))
    statuses = {t.status for t in sweep.trials}
    assert {"diverged", "collapsed"} <= statuses and statuses & {"completed", "stopped"}, statuses
    before = _files(sweep_dir)
    out = tmp_path / "report"
    assert main(["report", "--sweep", str(sweep_dir), "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert _files(sweep_dir) == before  # the sweep (its Optuna journal included) is only read
    assert sorted(p.name for p in out.iterdir()) == sorted([HTML_FILE, KNN_PLOT, PARAMS_PLOT, IMPORTANCE_PLOT])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary dirs left behind

    pngs = {}
    for name in (KNN_PLOT, PARAMS_PLOT, IMPORTANCE_PLOT):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width >= 400 and img.height >= 150
        pngs[name] = data

    page = (out / HTML_FILE).read_text()
    for trial in sweep.trials:
        assert trial.trial_id in page
        assert re.search(rf"<td>{trial.trial_id}</td>\s*<td>{trial.status}</td>", page), trial.trial_id
    # every image is inline, and they are the PNGs written beside the page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert sorted(base64.b64decode(s.split(",", 1)[1]) for s in sources) == sorted(pngs.values())
    # nothing external: no links, scripts, stylesheets, fonts or remote URLs
    lowered = page.lower()
    for marker in ("href=", "<link", "<script", "<iframe", "url(", "@import", "http://", "https://", 'src="/'):
        assert marker not in lowered, marker

    # the best config on the page is the one `ssl-tune export` writes
    shown = re.search(r'<pre id="best-config">(.*?)</pre>', page, re.S)
    assert shown
    exported = tmp_path / "export"
    assert main(["export", "--sweep", str(sweep_dir), "--out", str(exported)]) == 0
    assert yaml.safe_load(html.unescape(shown.group(1))) == yaml.safe_load((exported / "best.yaml").read_text())
    assert f"Best trial <b>{sweep.best().trial_id}</b>" in page


def test_knn_plot_marks_how_each_trial_ended(sweep_dir):
    from ssl_tune.tune.report import knn_figure

    sweep = load_sweep(str(sweep_dir))
    fig = knn_figure(sweep)
    ax = fig.axes[0]
    by_title = {leg.get_title().get_text(): leg for leg in fig.legends}
    end_state = by_title["end state"]
    labels = [t.get_text() for t in end_state.get_texts()]
    assert labels == [STATUS_LABEL[s] for s in STATUS_STYLE if s in {t.status for t in sweep.trials}]
    for handle, label in zip(end_state.legend_handles, labels, strict=True):
        status = next(s for s, text in STATUS_LABEL.items() if text == label)
        assert handle.get_marker() == STATUS_STYLE[status]["marker"]
        assert handle.get_linestyle() == STATUS_STYLE[status]["linestyle"]
    trial_labels = {t.get_text() for t in by_title["trial"].get_texts()}
    assert trial_labels == {f"{t.trial_id} ({t.status})" for t in sweep.trials}
    # each trial's line in its end state's style, and a marker at its end
    lines = {line.get_label(): line for line in ax.get_lines()}
    for t in sweep.trials:
        line = lines[f"{t.trial_id} ({t.status})"]
        assert line.get_linestyle() == STATUS_STYLE[t.status]["linestyle"]
        assert line.get_xdata()[0] == 0  # epoch 0, the random network
    end_markers = sorted(line.get_marker() for line in ax.get_lines() if line.get_linestyle() == "None")
    assert end_markers == sorted(STATUS_STYLE[t.status]["marker"] for t in sweep.trials)
    diverged = next(t for t in sweep.trials if t.status == "diverged")
    assert list(lines[f"{diverged.trial_id} (diverged)"].get_xdata()) == [0]  # its only finite kNN


def test_param_plot_has_a_log_axis_for_loguniform_and_category_positions(sweep_dir):
    from ssl_tune.tune.report import params_figure

    axes = {ax.get_xlabel(): ax for ax in params_figure(load_sweep(str(sweep_dir))).axes if ax.get_visible()}
    assert set(axes) == {"lr (log)", "weight_decay (log)", "collapse_std_threshold", "inject_nan_from_epoch"}
    assert axes["lr (log)"].get_xscale() == "log" and axes["collapse_std_threshold"].get_xscale() == "linear"
    assert [t.get_text() for t in axes["collapse_std_threshold"].get_xticklabels()] == ["0.0", "1.5"]
    assert [t.get_text() for t in axes["inject_nan_from_epoch"].get_xticklabels()] == ["1", "1000"]
    low, high = axes["lr (log)"].get_xlim()
    assert low < 1e-3 and high > 2.0  # the whole searched range


def _copy_with_study(sweep_dir: Path, dest: Path, trials: list[dict[str, float]]) -> Path:
    """The sweep's files with its Optuna journal replaced by a study holding only `trials` (params -> value)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    copy = dest / "mixed"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("train"))
    (copy / "optuna.journal").unlink()
    storage = JournalStorage(JournalFileBackend(str(copy / "optuna.journal")))
    study = optuna.create_study(study_name="mixed", storage=storage, direction="maximize")
    for params in trials:
        value = params.pop("value")
        dists = {k: FloatDistribution(1e-6, 2.0, log=True) for k in params}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    return copy


@pytest.mark.parametrize(
    ("trials", "expected"),
    [
        ([{"lr": 0.1, "weight_decay": 1e-5, "value": 0.2}], "needs 2"),
        ([{"lr": x, "value": x} for x in (0.01, 0.1, 1.0)], "only one parameter (lr) was searched"),
    ],
    ids=["one completed trial", "one parameter"],
)
def test_importances_that_cannot_be_computed_are_explained(sweep_dir, tmp_path, trials, expected, capsys):
    copy = _copy_with_study(sweep_dir, tmp_path, trials)
    out = tmp_path / "report"
    assert main(["report", "--sweep", str(copy), "--out", str(out)]) == 0
    assert not (out / IMPORTANCE_PLOT).exists() and (out / KNN_PLOT).is_file()
    page = (out / HTML_FILE).read_text()
    assert expected in page and "Parameter importances" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2


def _refused(argv: list[str], capsys, expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err, err


def test_bad_input_is_refused_and_nothing_is_written(sweep_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(["report", "--sweep", str(tmp_path / "nope"), "--out", str(out)], capsys, "does not exist")
    not_a_sweep = tmp_path / "plain"
    not_a_sweep.mkdir()
    _refused(["report", "--sweep", str(not_a_sweep), "--out", str(out)], capsys, "not an ssl-tune sweep")
    started = tmp_path / "started"
    started.mkdir()
    (started / "sweep.yaml").write_text(yaml.safe_dump({"space": {"fixed": {"method": "simsiam"}}}))
    _refused(["report", "--sweep", str(started), "--out", str(out)], capsys, "no finished trial")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "started"]

    # a non-empty --out is kept without --force, and replaced whole with it
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    _refused(["report", "--sweep", str(sweep_dir), "--out", str(out)], capsys, "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main(["report", "--sweep", str(sweep_dir), "--out", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / HTML_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plain", "started"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _refused(["report", "--sweep", str(sweep_dir), "--out", str(a_file), "--force"], capsys, "not a directory")
