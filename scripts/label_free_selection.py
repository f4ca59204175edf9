"""How well does each label-free metric pick a config, against the validation kNN? (docs: issue 28)

    python scripts/label_free_selection.py --data-dir ../shared/datasets [--out runs/label_free] \
        [--methods simsiam simclr byol] [--trials 6] [--epochs 4] [--train-subset 5000] [--confirm-seeds 3] \
        [--cost | --cost-only]

Per method, one real sweep on a CIFAR-10 subset (resnet_tiny) whose trials all run to the end (no early stopping),
each reporting its validation kNN accuracy and the three label-free metrics (rankme, lidar, alpha_req) at every
epoch, so the same trials serve every metric. From the last epoch of each trial it prints and writes (JSON):

- Kendall's tau-b between each label-free metric and the validation kNN, across the trials, with its two-sided
  permutation p-value (does the metric order the trials as the kNN does at all?);
- the selection regret of each metric: the test-split kNN (`ssl-tune eval`: k=200, the whole train split as the
  bank) of the trial the metric picks minus that of the trial the validation kNN picks (0: the same pick);
- where a metric picks another trial than the validation kNN, the regret confirmed: both trials' configs retrained
  with `--confirm-seeds` fresh seeds each, as `ssl-tune confirm` retrains (`retrain_config`: the whole subset,
  test kNN), and the per-seed differences' mean with its 95 % paired t interval;
- the few-label path: for 1,000 and 5,000 labels (CIFAR-10 train images SSL never saw, `--draws` seeded draws),
  split as a pool's labeled set is (`ImageData.labeled_splits`: half bank, half queries, stratified), the kNN on
  that split picks a trial; how often it picks the validation kNN's trial, and the mean regret in test kNN;
- with --cost, each metric's evaluation time against a training epoch on the whole CIFAR-10 train split.

The labels of the validation split are read by the kNN only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from ssl_tune.api import train
from ssl_tune.cli import main as cli
from ssl_tune.data import ImageData, load_data
from ssl_tune.engine.evaluate import backbone_state, checkpoint_config, evaluate_checkpoint, read_checkpoint
from ssl_tune.engine.knn import extract_features, knn_accuracy
from ssl_tune.methods import METHODS
from ssl_tune.metrics import LABEL_FREE, VAL_KNN
from ssl_tune.models.backbones import build_backbone
from ssl_tune.stats import paired_difference
from ssl_tune.tools.bench_search import kendall_tau
from ssl_tune.tune.confirm import retrain_config
from ssl_tune.tune.results import SweepRecord, TrialRecord, load_sweep
from ssl_tune.views import ViewGenerator

HEADS = {"proj_hidden_dim": 512, "proj_output_dim": 256, "pred_hidden_dim": 128}
MEASURE_ALL = {"rankme": True, "lidar": True, "alpha_req": True}


def space_for(method: str, args: argparse.Namespace) -> dict:
    heads = {k: v for k, v in HEADS.items() if k in METHODS[method].Params.model_fields}  # SimCLR: no predictor
    return {
        "fixed": {
            "method": method, "backbone": "resnet_tiny", "dataset": "cifar10", "train_subset": args.train_subset,
            "test_subset": 2000, "epochs": args.epochs, "batch_size": 128, **MEASURE_ALL,
            "rankme_images": args.train_subset, "lidar_images": args.lidar_images, "lidar_views": args.lidar_views,
            "augment": {"crop_min_scale": 0.2}, "method_params": heads,
        },
        "params": {
            "lr": {"type": "loguniform", "low": 0.01, "high": 3.0},
            "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-3},
            "augment.crop_min_scale": {"type": "uniform", "low": 0.08, "high": 0.6},
        },
        "sweep": {"num_samples": args.trials, "metric": VAL_KNN, "seed": 0, "early_stopping": "none"},
    }  # fmt: skip


def label_free_cost(data_dir: str, space: dict) -> dict[str, float]:
    """On the whole CIFAR-10 train split (45,000 SSL images), batch 256: one epoch's training time, then each
    metric's evaluation alone, in seconds and as a share of (training + that metric)."""
    from ssl_tune.config import build_config
    from ssl_tune.data.training import load_run_data
    from ssl_tune.engine.run import TrainingRun

    layer = {"data_dir": data_dir, "monitor": "val", "epochs": 1, "batch_size": 256, "train_subset": None,
             "rankme_images": 10_000}  # fmt: skip
    cfg = build_config(space["fixed"], layer)
    run = TrainingRun(cfg, load_run_data(cfg))
    run.initial_metrics()
    metrics = run.train_epoch()
    train_s = metrics.epoch_time_s - metrics.eval_time_s
    cost: dict[str, float] = {"train_epoch_s": train_s}
    for name in (VAL_KNN, *LABEL_FREE):
        start = time.perf_counter()
        run._measure([name])
        seconds = time.perf_counter() - start
        cost[f"{name}_s"], cost[f"{name}_share"] = seconds, seconds / (train_s + seconds)
    return cost


def tau_p_value(x: list[float], y: list[float], shuffles: int = 10_000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Kendall's tau between x and y: the share of seeded shuffles of y whose |tau|
    reaches the observed one (the observed order counted once).

    >>> tau_p_value([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8]) < 0.001
    True
    """
    observed = abs(kendall_tau(x, y))
    generator = torch.Generator().manual_seed(seed)
    reached = sum(
        abs(kendall_tau(x, [y[i] for i in torch.randperm(len(y), generator=generator).tolist()])) >= observed - 1e-12
        for _ in range(shuffles)
    )
    return (reached + 1) / (shuffles + 1)


def last_checkpoint(trial: TrialRecord) -> Path:
    """The checkpoint of the trial's last epoch, where every metric was read (Ray keeps the latest)."""
    return Path(trial.trial_dir) / trial.results[-1]["checkpoint_dir_name"]


def selection(trials: list[TrialRecord], data_dir: str) -> dict:
    """Kendall's tau of each metric against the validation kNN, and each metric's regret in test kNN (`test_knn`:
    a trial's test kNN, computed once, for the caller)."""
    last = {t.trial_id: t.results[-1] for t in trials}
    test_knn: dict[str, float] = {}

    def test_of(trial_id: str) -> float:  # the last epoch's checkpoint: where every metric was read
        if trial_id not in test_knn:
            path = last_checkpoint(next(t for t in trials if t.trial_id == trial_id))
            test_knn[trial_id] = evaluate_checkpoint(path, data_dir, "cpu").test_knn_acc
        return test_knn[trial_id]

    knn = [float(last[t.trial_id][VAL_KNN]) for t in trials]
    knn_pick = max(trials, key=lambda t: last[t.trial_id][VAL_KNN]).trial_id
    out: dict = {"knn_pick": {"trial": knn_pick, "test_knn_acc": test_of(knn_pick)}, "metrics": {}, "test_knn": test_of}
    for name in LABEL_FREE:
        values = [float(last[t.trial_id][name]) for t in trials]
        pick = max(trials, key=lambda t: float(last[t.trial_id][name])).trial_id
        out["metrics"][name] = {
            "kendall_tau_vs_val_knn": kendall_tau(values, knn),
            "kendall_tau_p_value": tau_p_value(values, knn),
            "pick": pick,
            "same_pick": pick == knn_pick,
            "regret_test_knn": test_of(pick) - test_of(knn_pick),
        }
    out["per_trial"] = [
        {"trial": t.trial_id, **{k: last[t.trial_id].get(k) for k in (VAL_KNN, *LABEL_FREE, "alpha_req_alpha")},
         "params": t.params}
        for t in trials
    ]  # fmt: skip
    return out


def confirmed_test_knn(sweep: SweepRecord, trial_id: str, seeds: int, folder: Path) -> list[float]:
    """The test kNN of trial `trial_id`'s config retrained with `seeds` fresh seeds (seed order), as confirm runs it;
    each run's result is kept in `folder` (<trial>-<seed>.json), so a rerun of the script resumes."""
    trial = next(t for t in sweep.trials if t.trial_id == trial_id)
    cfg = sweep.space.train_config(trial.params, sweep.data_dir).to_yaml_dict()
    accuracies = []
    for index in range(seeds):
        run_cfg = retrain_config(cfg, index, int(cfg["epochs"]))
        done = folder / f"{trial_id}-{run_cfg.seed}.json"
        if not done.exists():
            run_dir = folder / f"{trial_id}-{run_cfg.seed}"
            final = train(run_cfg, out=run_dir, force=True, progress_bar=False).final
            done.write_text(json.dumps({"test_knn_acc": final.test_knn_acc}))
            for checkpoint in run_dir.rglob("*.pt"):  # only the number is kept
                checkpoint.unlink()
        accuracies.append(float(json.loads(done.read_text())["test_knn_acc"]))
    return accuracies


def confirm_regrets(sweep: SweepRecord, chosen: dict, seeds: int, folder: Path) -> None:
    """Adds to each metric whose pick differs from the validation kNN's the confirmed regret (in `chosen`)."""
    folder.mkdir(parents=True, exist_ok=True)
    knn_pick = chosen["knn_pick"]["trial"]
    confirmed: dict[str, list[float]] = {}
    for picked in chosen["metrics"].values():
        if picked["same_pick"] or seeds < 1:
            continue
        for trial_id in (knn_pick, picked["pick"]):
            if trial_id not in confirmed:
                confirmed[trial_id] = confirmed_test_knn(sweep, trial_id, seeds, folder)
        gap = paired_difference(confirmed[picked["pick"]], confirmed[knn_pick])
        picked["confirmed_regret"] = {"differences": gap.differences, "mean": gap.mean, "low": gap.low,
                                      "high": gap.high, "verdict": gap.verdict}  # fmt: skip
    chosen["confirmed_test_knn"] = confirmed


FEW_LABELS = (1000, 5000)
UNSEEN = 10_000  # the labeled images are drawn from the CIFAR-10 train images after the SSL subset


def few_label_picks(trials: list[TrialRecord], data_dir: str, train_subset: int, draws: int) -> dict:
    """Per label budget and draw: the trial the kNN on a pool-style labeled set picks (features of the last
    checkpoint), against the validation kNN's pick. Returns the picks; the caller adds the regret."""
    data = load_data("cifar10", data_dir, train_subset=train_subset + UNSEEN, with_test=False)
    images, labels = data.train_images[train_subset:], data.train_labels[train_subset:]
    plain = ViewGenerator([], data.mean, data.std).plain
    features = {}
    for t in trials:
        state = read_checkpoint(last_checkpoint(t))
        cfg = checkpoint_config(state, data_dir)
        backbone = build_backbone(cfg.backbone, data.image_size)
        backbone.load_state_dict(backbone_state(state))
        features[t.trial_id] = extract_features(backbone, images, plain)
    picks: dict[str, list[str]] = {}
    for budget in FEW_LABELS:
        picks[str(budget)] = []
        for draw in range(draws):
            chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(draw))[:budget]
            pool = ImageData(images[:0], None, None, None, 10, data.mean, data.std, chosen, labels[chosen])
            held = pool.labeled_splits()  # train: the bank's indices into `images`, test: the queries'
            bank, queries = held.train_images, held.test_images
            k = min(200, len(bank))

            def accuracy(tid: str, bank=bank, queries=queries, held=held, k=k) -> float:
                f = features[tid]
                return knn_accuracy(f[bank], held.train_labels, f[queries], held.test_labels, 10, k)

            picks[str(budget)].append(max(features, key=accuracy))
    return picks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/label_free"))
    parser.add_argument("--methods", nargs="+", default=["simsiam", "simclr", "byol"])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-subset", type=int, default=5000)
    parser.add_argument("--lidar-images", type=int, default=1000)
    parser.add_argument("--lidar-views", type=int, default=10)
    parser.add_argument("--draws", type=int, default=5, help="few-label path: seeded draws of the labeled set")
    parser.add_argument("--confirm-seeds", type=int, default=3, help="seeds per differing pick's retrain (0: none)")
    parser.add_argument("--cost", action="store_true", help="also time each metric against a full-split epoch")
    parser.add_argument("--cost-only", action="store_true", help="only the timing (no sweeps)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"settings": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)}}
    for method in [] if args.cost_only else args.methods:
        space = space_for(method, args)
        space_file = args.out / f"{method}.yaml"
        store, name = args.out / "store", f"label_free_{method}"
        if (store / name).exists() and space_file.exists() and space_file.read_text() != yaml.safe_dump(space):
            print(f"{args.out} holds a {method} sweep of other settings: pass another --out", file=sys.stderr)
            return 2  # a rerun resumes that sweep; other settings would silently reuse its trials
        space_file.write_text(yaml.safe_dump(space))
        start = time.perf_counter()
        if not (store / name).exists():
            code = cli(["sweep", "--space", str(space_file), "--storage", str(store), "--name", name,
                        "--data-dir", args.data_dir])  # fmt: skip
            if code != 0:
                raise SystemExit(f"the {method} sweep failed (exit {code})")
        sweep = load_sweep(str(store / name))
        trials = [t for t in sweep.trials if t.status.finished_normally and t.results]
        chosen = selection(trials, args.data_dir)
        knn_pick, test_knn = chosen["knn_pick"]["trial"], chosen.pop("test_knn")
        confirm_regrets(sweep, chosen, args.confirm_seeds, args.out / "confirm" / method)
        few = few_label_picks(trials, args.data_dir, args.train_subset, args.draws)
        chosen["few_labels"] = {
            budget: {
                "picks": picks,
                "same_pick_share": sum(p == knn_pick for p in picks) / len(picks),
                "mean_regret_test_knn": sum(test_knn(p) - test_knn(knn_pick) for p in picks) / len(picks),
            }
            for budget, picks in few.items()
        }
        result[method] = {"trials": len(trials), "sweep_s": time.perf_counter() - start, **chosen}
        print(json.dumps({method: {k: v for k, v in result[method].items() if k != "per_trial"}}, indent=2))
    if args.cost or args.cost_only:
        result["cost"] = label_free_cost(args.data_dir, space_for(args.methods[0], args))
        print(json.dumps({"cost": result["cost"]}, indent=2))
    (args.out / "label_free_selection.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
