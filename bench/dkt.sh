#!/bin/sh
# bench/dkt.sh: DKT side by side, metalearn (bench/dkt.c) then PyTorch (bench/dkt_torch.py), on
# one knowledge-tracing dataset with the same files (train1 / valid1 / test), hyperparameters
# and thread count, one after the other so they do not share cores. Prints both result lines
# and the ratio of seconds per training epoch.
# Usage: sh bench/dkt.sh [BUILD_DIR] [DATASET] [THREADS] [extra torch options, e.g. --packed]
# Environment: METALEARN_DATA (default ../shared/data), ML_TORCH_PYTHON (default
# /work/venv/bin/python, else python3), EPOCHS (cap on epochs for both, default 50).
set -eu
BUILD=${1:-build}
DATASET=${2:-assist2009_updated}
THREADS=${3:-1}
shift $(( $# < 3 ? $# : 3 ))
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${METALEARN_DATA:-$HERE/../../shared/data}
PY=${ML_TORCH_PYTHON:-/work/venv/bin/python}
[ -x "$PY" ] || PY=python3
EPOCHS=${EPOCHS:-50}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "== metalearn"
OMP_NUM_THREADS=$THREADS "$BUILD/bench/dkt" "$DATASET" --threads "$THREADS" --epochs "$EPOCHS" --data "$DATA" | tee "$OUT/ml.txt"
echo "== pytorch"
OMP_NUM_THREADS=$THREADS "$PY" "$HERE/dkt_torch.py" "$DATASET" --threads "$THREADS" --epochs "$EPOCHS" --data "$DATA" "$@" | tee "$OUT/pt.txt"
ml=$(awk '/s_per_epoch/ { for (i = 1; i < NF; i++) if ($i == "s_per_epoch") print $(i + 1) }' "$OUT/ml.txt")
pt=$(awk '/s_per_epoch/ { for (i = 1; i < NF; i++) if ($i == "s_per_epoch") print $(i + 1) }' "$OUT/pt.txt")
mla=$(awk '/^test/ { print $3 }' "$OUT/ml.txt")
pta=$(awk '/^test/ { print $3 }' "$OUT/pt.txt")
awk -v d="$DATASET" -v t="$THREADS" -v ml="$ml" -v pt="$pt" -v a="$mla" -v b="$pta" 'BEGIN {
  printf "summary %s threads %s: s/epoch metalearn %.2f pytorch %.2f ratio %.2fx; test AUC metalearn %.4f pytorch %.4f (diff %+.4f)\n",
    d, t, ml, pt, pt / ml, a, b, a - b }'
