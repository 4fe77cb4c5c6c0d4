#!/bin/sh
# bench/dkt_speed.sh: seconds per DKT training epoch, metalearn vs PyTorch (padded batches, the
# common implementation, and packed sequences): each side trains two epochs and the second one is
# timed (warm: allocators and caches as in a long run), alternating the sides REPEAT times and
# keeping each side's fastest: on a machine shared with other jobs the minimum is the
# measurement least disturbed by them. Same files, hyperparameters and thread count as
# bench/dkt.sh. Usage: sh bench/dkt_speed.sh [BUILD_DIR] [DATASET] [THREADS] [REPEAT]
# PACKED=0 skips the packed PyTorch variant (several times slower than the padded one on CPU).
set -eu
BUILD=${1:-build}
DATASET=${2:-assist2009_updated}
THREADS=${3:-1}
REPEAT=${4:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${METALEARN_DATA:-$HERE/../../shared/data}
PY=${ML_TORCH_PYTHON:-/work/venv/bin/python}
[ -x "$PY" ] || PY=python3
spe() { awk '/last_epoch_s/ { for (i = 1; i < NF; i++) if ($i == "last_epoch_s") print $(i + 1) }'; }
ml=999999 pt=999999 pk=999999
r=0
while [ $r -lt "$REPEAT" ]; do
  a=$(OMP_NUM_THREADS=$THREADS "$BUILD/bench/dkt" "$DATASET" --threads "$THREADS" --epochs 2 --patience 9 --data "$DATA" 2>/dev/null | spe)
  b=$(OMP_NUM_THREADS=$THREADS "$PY" "$HERE/dkt_torch.py" "$DATASET" --threads "$THREADS" --epochs 2 --patience 9 --data "$DATA" | spe)
  c=999999
  [ "${PACKED:-1}" = 0 ] || c=$(OMP_NUM_THREADS=$THREADS "$PY" "$HERE/dkt_torch.py" "$DATASET" --threads "$THREADS" --epochs 2 --patience 9 --packed --data "$DATA" | spe)
  echo "run $((r + 1)): s/epoch metalearn $a pytorch $b pytorch-packed $c"
  ml=$(awk -v x="$ml" -v y="$a" 'BEGIN { print (y < x ? y : x) }')
  pt=$(awk -v x="$pt" -v y="$b" 'BEGIN { print (y < x ? y : x) }')
  pk=$(awk -v x="$pk" -v y="$c" 'BEGIN { print (y < x ? y : x) }')
  r=$((r + 1))
done
awk -v d="$DATASET" -v t="$THREADS" -v ml="$ml" -v pt="$pt" -v pk="$pk" 'BEGIN {
  printf "speed %s threads %s: best s/epoch metalearn %.2f, pytorch %.2f (%.2fx)", d, t, ml, pt, pt / ml
  if (pk < 999999) printf ", pytorch packed %.2f (%.2fx)", pk, pk / ml
  printf "\n" }'
