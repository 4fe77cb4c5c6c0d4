#!/usr/bin/env bash
# The few-shot results table: every algorithm on Omniglot's standard MAML split (1200 training
# characters with rotations, 423 test), 5-way and 20-way, 1-shot and 5-shot, each meta-trained
# for a fixed wall-time budget on this machine, then scored on 600 fixed test episodes (mean
# accuracy with 95% CI). Settings follow each paper where the budget allows.
#   [CONFIGS="5:1 20:5"] [RESUME=1] bench/fewshot_table.sh [budget_seconds=300] [algos...]
# Writes runs/table/<algo>-<N>w<K>s/ and prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-300}
shift || true
algos=${*:-"maml fomaml metasgd anil reptile protonet matchingnet finetune"}
bin=${METALEARN_BIN:-build/metalearn}
mkdir -p runs/table
printf '| algorithm | 5w1s | 5w5s | 20w1s | 20w5s |\n|---|---|---|---|---|\n'
for a in $algos; do
  row="| $a |"
  for cfg in ${CONFIGS:-5:1 5:5 20:1 20:5}; do
    n=${cfg%:*} k=${cfg#*:}
    extra=""
    case $a in
      maml|fomaml|metasgd|anil)
        # Finn et al.: 5-way: 1 step, alpha 0.4, meta-batch 32; 20-way: 5 steps, alpha 0.1, batch 16
        if [ "$n" = 5 ]; then extra="--meta_batch 32 --inner_steps 1 --inner_steps_test 3 --inner_lr 0.4"
        else extra="--meta_batch 16 --inner_steps 5 --inner_steps_test 5 --inner_lr 0.1"; fi
        [ "$a" = metasgd ] && extra="$extra --inner_lr 0.1"
        extra="$extra --q_query 5" ;;
      reptile) extra="--meta_batch 5 --q_query 5 --inner_steps_test 50" ;;
      protonet) extra="--train_way 60 --q_query 5 --meta_batch 2" ;;      # Snell et al.: 60-way training
      matchingnet) extra="--q_query 5 --meta_batch 2" ;;
      finetune) extra="--pretrain_way 64 --q_query 5 --finetune_steps 100" ;;
    esac
    run=runs/table/$a-${n}w${k}s
    # a finished cell is kept (RESUME=1): the table can be built over several sessions
    if [ "${RESUME:-0}" = 1 ] && [ -f "$run/eval.json" ]; then :; else
    rm -rf "$run"
    $bin train --dataset omniglot --algo "$a" --n_way "$n" --k_shot "$k" --iterations 100000000 \
      --max_seconds "$budget" --eval_episodes 600 --log_every 50 --quiet $extra --run "$run" > "$run.out" 2>&1 || {
      row="$row failed |"; continue; }
    fi
    acc=$(sed -n 's/.*"test_acc": \([0-9.e-]*\).*"ci95": \([0-9.e-]*\).*/\1 \2/p' "$run/eval.json")
    it=$(grep -o '"iter": [0-9]*' "$run/metrics.jsonl" | tail -1 | grep -o '[0-9]*$')
    row="$row $(awk -v a="${acc% *}" -v c="${acc#* }" -v i="$it" 'BEGIN{printf "%.1f +- %.1f (%d it)", 100*a, 100*c, i}') |"
  done
  echo "$row"
done
echo
echo "budget: ${budget}s of meta-training per cell, $(nproc) cores, $($bin info | sed -n 's/^gemm: *//p')"
