#!/usr/bin/env bash
# Wheels that a lent GPU machine lacks for scripts/gpu_check.py, into .whl/ (git-ignored), for `carry`.
# Its python3 (3.12) already has torch, torchvision, numpy, pyarrow, PyYAML, tqdm and Pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qsxF "/.whl/" .git/info/exclude || echo '/.whl/' >>.git/info/exclude
pin() { grep -i "^$1==" constraints.txt; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "$(pin pydantic)" "$(pin pydantic_core)" "$(pin annotated-types)" "$(pin typing-inspection)" "$(pin typing_extensions)"
ls -l .whl
