#!/bin/sh
# bench/scaling: 1 rank x 2 threads against 2 ranks x 1 thread (the same 2 cores), MAML on
# Omniglot-shaped tasks, meta-batch 32 (bench/scaling.c). Prints a Markdown table for
# bench/RESULTS.md. usage: bench/scaling.sh [BUILD_DIR] [ITERS]
set -e
BUILD=${1:-build}
ITERS=${2:-6}
BIN=$BUILD/bench/scaling
MPIRUN=${MPIRUN:-mpirun}
[ -x "$BIN" ] || { echo "bench/scaling: $BIN not built (make build)" >&2; exit 1; }
if ! "$BUILD/metalearn" info | grep -q "^mpi: *yes"; then
  echo "bench/scaling: this build has no MPI (apt-get install libopenmpi-dev openmpi-bin; reconfigure)" >&2; exit 1
fi
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
row() {
  printf '| %s x %s | %s | %s | %s | %s | %s |\n' "$(field "$1" ranks)" "$(field "$1" threads)" \
    "$(field "$1" sec_per_iter)" "$(field "$1" comm_sec_per_iter)" "$(field "$1" bytes_sent_per_iter)" \
    "$(field "$1" exchange_ms)" "$(field "$1" params)"
}
a=$("$BIN" --threads 2 --iters "$ITERS")
b=$("$MPIRUN" --allow-run-as-root -np 2 --bind-to core "$BIN" --threads 1 --iters "$ITERS")
c=$("$BIN" --threads 1 --iters "$ITERS" --meta_batch 16)
echo "| ranks x threads | s / meta-iteration | s in gradient exchange / iteration | bytes sent / rank / iteration | exchange alone (ms) | parameters |"
echo "|---|---|---|---|---|---|"
row "$a"
row "$b"
echo
echo "1 rank x 1 thread, meta-batch 16: $(field "$c" sec_per_iter) s / iteration ($(echo "$(field "$c" sec_per_iter)" | awk '{printf "%.1f", $1 / 16 * 1000}') ms per task)"
