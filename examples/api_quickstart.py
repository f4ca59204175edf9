#!/usr/bin/env python3
"""The README's Python API example as a script: sweep → export → train → confirm, each a function of `ssl_tune`
that returns a typed result (what the `ssl-tune` commands of the same names print).

    python examples/api_quickstart.py [--storage sweeps] [--out runs] [--num-samples 4] [--epochs 8]

It runs the quickstart space (`search_spaces/quickstart.yaml`: SimCLR, resnet_tiny, generated 16 px images, on a
local Ray cluster, so it needs no data and no GPU). The defaults are the README's; CI runs it smaller.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ssl_tune
from ssl_tune.errors import UsageError

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", default="sweeps", help="where the sweep's folder goes")
    p.add_argument("--out", default="runs", help="where the export and the retrained run go")
    p.add_argument("--num-samples", type=int, default=4, help="trials of the sweep")
    p.add_argument("--epochs", type=int, default=8, help="epochs per trial")
    p.add_argument("--grace-period", type=int, default=2, help="ASHA's first rung, in epochs")
    p.add_argument("--retrain-epochs", type=int, default=12, help="epochs of the retrained best config")
    p.add_argument("--seeds", type=int, default=2, help="fresh seeds per confirmed config")
    p.add_argument("--train-subset", type=int, default=None, help="train images (the space's 2,048 by default)")
    args = p.parse_args(argv)
    shrink = {} if args.train_subset is None else {"train_subset": args.train_subset}
    try:
        result = ssl_tune.sweep(  # -> SweepResult (ssl_tune.tune.sweep)
            SPACE,
            storage=args.storage,
            settings={"num_samples": args.num_samples},  # the space's `sweep:` section (--num-samples, ...)
            asha={"grace_period": args.grace_period},  # its `asha:` section
            epochs=args.epochs,  # keyword overrides of its fixed settings, as --set
            **shrink,
        )
        print("\n".join(result.summary))  # epoch 0, the default recipe, the best trial and the gains
        best = result.best  # TrialRecord: trial_id, params, value (its last epoch), results (per epoch)
        print(best.trial_id, best.params, best.value)

        out = Path(args.out)
        exported = ssl_tune.export(result, out / "best", force=True)  # -> ExportResult: best.yaml, backbone.pt
        run = ssl_tune.train(f"{exported.out}/best.yaml", out=out / "retrain", force=True, epochs=args.retrain_epochs)
        print(run.final.knn(), run.out)  # the last epoch's EpochMetrics: (metric name, value)

        confirmed = ssl_tune.confirm(result, top=1, seeds=args.seeds, with_default=True)  # -> ConfirmResult
        print(confirmed.table)  # mean ± std test kNN and linear probe
    except UsageError as err:
        print(f"api_quickstart: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
