"""Read $SSL_TUNE_STREAM_LOG: per epoch, whether the ranks' ids are disjoint and cover all but less than one global
batch, and each rank's peak memory. Usage: stream_log_report.py LOG_DIR N_TRAIN GLOBAL_BATCH"""

import json
import sys
from pathlib import Path

import numpy as np

log, n_train, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
entries = [json.loads(line) for line in (log / "epochs.jsonl").read_text().splitlines()]
for epoch in sorted({e["epoch"] for e in entries}):
    rows = [e for e in entries if e["epoch"] == epoch]
    ids = {e["rank"]: np.load(log / f"ids-pid{e['pid']}-rank{e['rank']}-epoch{epoch}.npy") for e in rows}
    both = np.concatenate(list(ids.values()))
    unique = len(np.unique(both))
    overlap = len(np.intersect1d(ids[0], ids[1])) if len(ids) == 2 else None
    print(f"epoch {epoch}: per rank {[len(v) for v in ids.values()]}, overlap {overlap}, unique {unique}")
    print(f"  missed {n_train - unique} of {n_train} (< one global batch of {batch}: {n_train - unique < batch})")
    for e in rows:
        print(
            f"  rank {e['rank']}: ru_maxrss {e['peak_rss_mb']:.0f} MiB, epoch peak RssAnon "
            f"{e['epoch_peak_anon_mb']:.0f} MiB, RssShmem {e['epoch_peak_shmem_mb']:.0f} MiB"
        )
