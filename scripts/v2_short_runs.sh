#!/usr/bin/env bash
# The v2 recipe's short runs (docs/quality/v2-recipe/PLAN.md and its amendments), one at a time or all:
#
#   scripts/v2_short_runs.sh R0            # start (or, when its directory has a checkpoint, resume) one run
#   scripts/v2_short_runs.sh R0 R1 R4      # several, one after another
#   python benchmarks/short_runs.py --runs $TEXT2LORA_HOME/runs/v2-short    # the table, the rule, the plot
#
# Every run trains on the same frozen library copy ($TEXT2LORA_HOME/library-shortruns: library v2 with the
# descriptions shipped at commit 690205e; on a machine without it, rebuild it with
# scripts/rebuild_shortrun_library.py, whose header shows how) with one thread, 600 steps, validation by
# generation on the v2 validation tasks at steps 0, 200, 400 and 600. THREADS=2 uses both cores.
set -euo pipefail
HOME_DIR=${TEXT2LORA_HOME:-$HOME/.cache/text2lora}
RUNS=$HOME_DIR/runs/v2-short
LIBRARY=$HOME_DIR/library-shortruns
MULTITASK=$HOME_DIR/runs/bench-quality-v2/lora-library/_multitask
T2L=${T2L:-.venv/bin/text2lora}
[ -d "$LIBRARY" ] || { echo "error: no frozen library at $LIBRARY (rebuild it: see the header of $0)" >&2; exit 2; }
common=(--config configs/smollm2-sft-v2.yaml --set loop.steps=600 --set loop.eval_every=200 --set loop.save_every=100
        --set "data.library=$LIBRARY" --set "loop.threads=${THREADS:-1}")
control=(--set hypernet.offset=false --set hypernet.examples=null --set data.shots_only_prob=0.0)
for run in "$@"; do
  case $run in
    R0) extra=("${control[@]}") ;;
    R1) extra=(--set hypernet.offset=true --set hypernet.examples=null --set data.shots_only_prob=0.0
               --set "init_lora=$MULTITASK") ;;
    R2) extra=("${control[@]}" --set copy_downweight=1.0) ;;
    R3) extra=("${control[@]}" --set data.tasks_per_batch=4 --set data.examples_per_task=2) ;;
    R4) extra=(--set hypernet.offset=false --set data.shots_zero_prob=0.25 --set data.shots_only_prob=0.25) ;;
    R5) extra=(--set hypernet.offset=false --set data.shots_zero_prob=0.25 --set data.shots_only_prob=0.25
               --set hypernet.examples.pooling=mean) ;;
    *) echo "error: unknown run $run (R0..R5)" >&2; exit 2 ;;
  esac
  resume=()
  compgen -G "$RUNS/$run/ckpt-*" > /dev/null && resume=(--resume)
  mkdir -p "$RUNS" "$HOME_DIR/logs"
  echo "$(date -u +%FT%TZ) $run ${resume[*]}" >&2
  "$T2L" train sft "${common[@]}" "${extra[@]}" --out "$RUNS/$run" "${resume[@]}" >> "$HOME_DIR/logs/$run.log" 2>&1
done
