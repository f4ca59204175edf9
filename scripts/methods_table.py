"""Train every method 8 epochs on a CIFAR-10 subset (resnet_tiny, CPU) and print kNN at epoch 0 and 8.

    python scripts/methods_table.py --data-dir ../shared/datasets [--out runs/methods] [--methods a,b]

The settings are the "Methods" table (docs/methods/index.md): 5,000 train / 2,000 test images, batch 64, weak crops
(min scale 0.2), heads shrunk for CPU; everything else is each method's own defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ssl_tune.cli import main
from ssl_tune.methods import METHODS

HEADS = {"proj_hidden_dim": 512, "proj_output_dim": 256, "pred_hidden_dim": 256, "num_prototypes": 512}
OVERRIDES = {"simsiam": {"pred_hidden_dim": 128}}


def run(method: str, data_dir: str, out: Path, epochs: int) -> dict:
    fields = METHODS[method].Params.model_fields
    params = {k: v for k, v in {**HEADS, **OVERRIDES.get(method, {})}.items() if k in fields}
    sets = ["augment.crop_min_scale=0.2", *[f"method_params.{k}={v}" for k, v in params.items()]]
    args = ["train", "--method", method, "--backbone", "resnet_tiny", "--dataset", "cifar10", "--data-dir", data_dir,
            "--train-subset", "5000", "--test-subset", "2000", "--epochs", str(epochs), "--batch-size", "64",
            "--seed", "0", "--out", str(out / method), "--force", "--no-progress"]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    start = time.perf_counter()
    code = main(args)
    rows = [json.loads(line) for line in (out / method / "metrics.jsonl").read_text().splitlines()]
    return {
        "method": method,
        "exit": code,
        "knn0": rows[0]["test_knn_acc"],
        "knn_last": rows[-1]["test_knn_acc"],
        "epochs": rows[-1]["epoch"],
        "minutes": (time.perf_counter() - start) / 60,
        "command": " ".join(args),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", default="runs/methods")
    parser.add_argument("--methods", default=",".join(sorted(METHODS)))
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    results = [run(m, args.data_dir, Path(args.out), args.epochs) for m in args.methods.split(",")]
    print("| method | kNN epoch 0 | kNN epoch 8 | gain (points) | minutes |")
    print("|---|---|---|---|---|")
    for r in results:
        gain = 100 * (r["knn_last"] - r["knn0"])
        print(
            f"| `{r['method']}` | {100 * r['knn0']:.1f} % | {100 * r['knn_last']:.1f} % | {gain:+.1f} "
            f"| {r['minutes']:.1f} |"
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "table.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    cli()
