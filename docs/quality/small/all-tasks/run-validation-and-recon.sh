#!/bin/bash
# After run-eval.sh: both T2L-SFT checkpoints on the unseen validation tasks (families no evaluation task comes from),
# then T2L-recon for 6000 steps on the timed run's 12-LoRA library and its seen-task scores.
set -euo pipefail
cd /work/main && source .venv/bin/activate
V=$(python -c "import json; print(','.join(json.load(open('docs/quality/small/all-tasks/validation_tasks.json'))['unseen_validation']))")
C="--max-new-tokens 24 --seed 0 -q --max-instances 20 --groups train,random --cache-dir runs/unseen-val/cache"
echo "val start $(date -u +%FT%TZ)"
text2lora eval -m t2l-sft --t2l-sft runs/sft-all/run/best --tasks $V $C --report runs/unseen-val/all-tasks
echo "val new done $(date -u +%FT%TZ)"
text2lora eval -m t2l-sft --t2l-sft src/text2lora/checkpoints/default --tasks $V $C --report runs/unseen-val/shipped
echo "val shipped done $(date -u +%FT%TZ)"
W=runs/bench-quality-small-timed
OUT=runs/recon-6000
echo "recon start $(date -u +%FT%TZ)"
if [ -f $OUT/summary.json ]; then :; elif [ -d $OUT ]; then
  text2lora train recon --lora-library $W/lora-library --config docs/quality/small-timed/recon-6000/config.yaml --out $OUT --resume
else
  text2lora train recon --lora-library $W/lora-library --config docs/quality/small-timed/recon-6000/config.yaml --out $OUT
fi
echo "recon done $(date -u +%FT%TZ)"
S=$(python -c "import json; print(','.join(json.load(open('docs/quality/small/tasks.json'))['seen_eval']))")
[ -d $OUT-cache ] || cp -r $W/eval-cache $OUT-cache
text2lora eval -m task-lora,t2l-recon --t2l-recon $OUT/best --lora-library $W/lora-library --groups train --tasks $S \
    --max-instances 20 --max-new-tokens 24 --seed 0 -q --cache-dir $OUT-cache --report $OUT/report
python benchmarks/claims.py $OUT/report > /dev/null
echo "recon eval done $(date -u +%FT%TZ)"
