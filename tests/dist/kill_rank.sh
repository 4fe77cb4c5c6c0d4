#!/usr/bin/env bash
# Starts a long two-rank `metalearn train`, waits until it has logged an iteration, kills rank 1
# with SIGKILL from outside and reports how long the job takes to end.
#   usage: kill_rank.sh MPIRUN METALEARN RUN_DIR
# Prints the job's output, then "killed rank 1 (pid P); job ended after S s with exit E".
set -u
MPIRUN=$1 BIN=$2 RUN=$3
log=$(mktemp)
"$MPIRUN" --allow-run-as-root --oversubscribe -np 2 "$BIN" train --dataset sinusoid --algo maml --k_shot 5 \
  --meta_batch 4 --threads 1 --iterations 1000000 --log_every 1 --checkpoint_every 0 --quiet --run "$RUN" \
  >"$log" 2>&1 &
job=$!
# rank 1 is the child of mpirun whose environment says so
children() { cat /proc/[0-9]*/stat 2>/dev/null | awk -v pp="$1" '$4 == pp {print $1}'; }
victim=""
for _ in $(seq 1 200); do
  if [ -s "$RUN/metrics.jsonl" ]; then
    for p in $(children "$job"); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$p; fi
    done
    [ -n "$victim" ] && break
  fi
  sleep 0.1
done
if [ -z "$victim" ]; then
  echo "kill_rank: rank 1 not found (training did not start?)"; cat "$log"; kill "$job" 2>/dev/null; wait "$job"; rm -f "$log"; exit 1
fi
t0=$(date +%s.%N)
kill -9 "$victim"
wait "$job"
rc=$?
t1=$(date +%s.%N)
cat "$log"
rm -f "$log"
echo "killed rank 1 (pid $victim); job ended after $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s with exit $rc"
