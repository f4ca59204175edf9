"""How well does label-free RankMe selection do against validation-kNN selection? (docs/benchmarks.md)

    python scripts/rankme_vs_knn.py --data-dir ../shared/datasets [--out runs/rankme_vs_knn] [--trials 8]

One real sweep on a CIFAR-10 subset (SimSiam, resnet_tiny) in which every trial reports both its validation
kNN accuracy and RankMe; the labels of the validation split are used only by the kNN, never by RankMe. It
prints and writes (JSON):

- the Spearman rank correlation of the two metrics across the trials (final epoch of each trial);
- the test-split kNN (`ssl-tune eval`: k=200, the whole train split as the bank) of the config each metric
  picks;
- RankMe's cost against a training epoch on the whole CIFAR-10 train split (see `rankme_cost`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from ssl_tune.cli import main as cli
from ssl_tune.engine.evaluate import evaluate_checkpoint
from ssl_tune.metrics import RANKME, VAL_KNN
from ssl_tune.tools.bench_search import spearman  # Spearman's rho, average ranks for ties
from ssl_tune.tune.results import load_sweep


def rankme_cost(data_dir: str, space: dict) -> dict[str, float]:
    """On the whole CIFAR-10 train split (45,000 SSL images, 5,000 validation queries), batch 256: one epoch's
    training time, and the evaluation's time with the validation kNN alone, RankMe alone (10,000 images), and
    both (they share one feature extraction)."""
    from ssl_tune.config import build_config
    from ssl_tune.data.training import load_run_data
    from ssl_tune.engine.run import TrainingRun

    layer = {"data_dir": data_dir, "monitor": "val", "rankme": True, "epochs": 1, "batch_size": 256,
             "train_subset": None, "rankme_images": 10_000}  # fmt: skip
    cfg = build_config(space["fixed"], layer)
    run = TrainingRun(cfg, load_run_data(cfg))
    run.initial_metrics()
    metrics = run.train_epoch()
    train_s = metrics.epoch_time_s - metrics.eval_time_s

    def timed(names: list[str]) -> float:
        start = time.perf_counter()
        run._measure(names)
        return time.perf_counter() - start

    knn_s, rankme_s, both_s = timed([VAL_KNN]), timed([RANKME]), timed([VAL_KNN, RANKME])
    return {
        "train_epoch_s": train_s,
        "val_knn_s": knn_s,
        "rankme_alone_s": rankme_s,
        "val_knn_and_rankme_s": both_s,
        "rankme_alone_share": rankme_s / (train_s + rankme_s),
        "rankme_beside_knn_share": (both_s - knn_s) / (train_s + both_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/rankme_vs_knn"))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-subset", type=int, default=5000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    space = {
        "fixed": {
            "method": "simsiam", "backbone": "resnet_tiny", "dataset": "cifar10", "train_subset": args.train_subset,
            "test_subset": 2000, "epochs": args.epochs, "batch_size": 128, "rankme": True,
            "rankme_images": args.train_subset, "augment": {"crop_min_scale": 0.2},
            "method_params": {"proj_hidden_dim": 512, "proj_output_dim": 256, "pred_hidden_dim": 128},
        },
        "params": {
            "lr": {"type": "loguniform", "low": 0.01, "high": 3.0},
            "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-3},
            "augment.crop_min_scale": {"type": "uniform", "low": 0.08, "high": 0.6},
        },
        "asha": {"grace_period": args.epochs, "reduction_factor": 2},  # no early stopping: every trial ends
        "sweep": {"num_samples": args.trials, "metric": VAL_KNN, "seed": 0},
    }  # fmt: skip
    space_file = args.out / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    store = args.out / "store"
    start = time.perf_counter()
    sweep_dir = store / "rankme_vs_knn"
    if not sweep_dir.exists():
        code = cli(["sweep", "--space", str(space_file), "--storage", str(store), "--name", "rankme_vs_knn",
                    "--data-dir", args.data_dir])  # fmt: skip
        assert code == 0, code
    sweep_s = time.perf_counter() - start
    sweep = load_sweep(str(sweep_dir))
    trials = [t for t in sweep.trials if t.results and t.results[-1].get(RANKME) is not None]
    knn = [float(t.results[-1][VAL_KNN]) for t in trials]
    rank = [float(t.results[-1][RANKME]) for t in trials]
    by_knn = max(trials, key=lambda t: t.results[-1][VAL_KNN])
    by_rankme = max(trials, key=lambda t: t.results[-1][RANKME])

    def test_knn(trial) -> float:  # at the last epoch, where both metrics were read (Ray keeps the latest)
        return evaluate_checkpoint(Path(trial.checkpoint), args.data_dir, "cpu").test_knn_acc

    result = {
        "trials": len(trials),
        "spearman_val_knn_vs_rankme": spearman(knn, rank),
        "per_trial": [
            {"trial": t.trial_id, VAL_KNN: k, RANKME: r, "params": t.params}
            for t, k, r in zip(trials, knn, rank, strict=True)
        ],
        "knn_choice": {"trial": by_knn.trial_id, "test_knn_acc": test_knn(by_knn)},
        "rankme_choice": {"trial": by_rankme.trial_id, "test_knn_acc": test_knn(by_rankme)},
        "sweep_s": sweep_s,
        "cost": rankme_cost(args.data_dir, space),
    }
    (args.out / "rankme_vs_knn.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_trial"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
