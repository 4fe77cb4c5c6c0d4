#!/bin/sh
# MeLU side by side: metalearn vs the PyTorch reference (bench/melu_torch.py) on the same
# MovieLens-100K fold (metalearn exports its fold), same model, algorithm and settings, threads set
# explicitly on both sides. Prints the time per meta-training epoch and the MAE per K for both.
#   sh bench/melu_bench.sh [iterations] [threads] [algo: maml|fomaml]
set -e
ITERS=${1:-300}
THREADS=${2:-2}
ALGO=${3:-maml}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${METALEARN_BIN:-$ROOT/build/metalearn}
DATA=${METALEARN_DATA:-$ROOT/../shared/data}/movielens/ml-100k
PY=${PYTHON:-/work/venv/bin/python}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "== metalearn MeLU ($ALGO), fold 0, $ITERS meta-iterations, $THREADS threads"
"$BIN" train --dataset movielens --data "$DATA" --folds 1 --methods melu --scenarios new-users --algo "$ALGO" \
  --iterations "$ITERS" --eval_every 0 --threads "$THREADS" --export "$OUT" --quiet | grep -E "MAE|MeLU|K=1"
FO=""
[ "$ALGO" = fomaml ] && FO=--first_order
echo "== PyTorch MeLU ($ALGO), same fold"
"$PY" "$ROOT/bench/melu_torch.py" --data "$DATA" --fold "$OUT/fold0.txt" --iterations "$ITERS" --threads "$THREADS" $FO
