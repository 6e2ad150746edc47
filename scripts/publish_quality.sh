#!/bin/bash
# Copy a finished quality run's report and training records into docs/quality/<scale>/ (runs/ is not committed),
# and its T2L-SFT checkpoint into the package as the shipped default.
#   bash scripts/publish_quality.sh small [--ship]
#   WORK=runs/other-work-dir bash scripts/publish_quality.sh small    # a run made with --work
set -euo pipefail
SCALE=${1:?scale}
W=${WORK:-runs/bench-quality-$SCALE}
D=docs/quality/$SCALE
test -f $W/report/results.json || { echo "no report in $W"; exit 2; }
mkdir -p $D/training
cp $W/report/results.md $W/report/results.json $W/report/claims.md $D/
cp $W/report/results.png $D/ 2>/dev/null || true
cp $W/tasks.json $D/
for run in t2l-sft t2l-recon; do
  mkdir -p $D/training/$run
  cp $W/$run/metrics.jsonl $D/training/$run/
  cp $W/$run/loss.png $D/training/$run/ 2>/dev/null || true
done
mkdir -p $D/training/lora-library
for d in $W/lora-library/.runs/*/; do
  t=$(basename $d); mkdir -p $D/training/lora-library/$t
  cp $d/metrics.jsonl $D/training/lora-library/$t/ 2>/dev/null || true
done
mkdir -p $D/configs $D/stages
cp $W/configs/*.yaml $D/configs/
cp $W/stages/*.json $D/stages/
if [ "${2:-}" = "--ship" ]; then
  S=src/text2lora/checkpoints/default
  mkdir -p $S
  cp $W/t2l-sft/best/t2l_config.json $W/t2l-sft/best/hypernet.safetensors $S/
  chmod 644 $S/*
  ls -la $S
fi
du -sh $D
