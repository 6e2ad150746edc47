#!/bin/bash
# Larger-sample evaluation of the unseen tasks (60 instances a task, capped by the task's size) for the shipped
# checkpoint and the 272-task T2L-SFT (docs/quality/small/all-tasks/), then the latter on the seen tasks.
# Every unit is cached: rerunning this script resumes.
set -euo pipefail
cd /work/main && source .venv/bin/activate
W=runs/unseen-60
U=$(python -c "import json; print(','.join(json.load(open('docs/quality/small/tasks.json'))['unseen_eval']))")
S=$(python -c "import json; print(','.join(json.load(open('docs/quality/small/tasks.json'))['seen_eval']))")
G=train,random,other,heldout
C="--max-new-tokens 24 --seed 0 -q --lora-library runs/bench-quality-small/lora-library"
NEW=runs/sft-all/run/best
SHIP=src/text2lora/checkpoints/default
echo "start $(date -u +%FT%TZ)"
text2lora eval -m t2l-sft --t2l-sft $NEW --groups $G --tasks $U --max-instances 60 $C --cache-dir $W/cache
echo "new unseen done $(date -u +%FT%TZ)"
text2lora eval -m t2l-sft --t2l-sft $SHIP --groups $G --tasks $U --max-instances 60 $C --cache-dir $W/cache
echo "shipped unseen done $(date -u +%FT%TZ)"
[ -d $W/seen-cache ] || cp -r runs/bench-quality-small/eval-cache $W/seen-cache
text2lora eval -m base,multitask-lora,task-lora,t2l-sft --t2l-sft $NEW --groups $G --tasks $S --max-instances 20 $C \
    --cache-dir $W/seen-cache --report $W/all-tasks-seen
echo "new seen done $(date -u +%FT%TZ)"
text2lora eval -m base,desc-prompt,multitask-lora,t2l-sft --t2l-sft $SHIP --groups $G --tasks $U --max-instances 60 $C \
    --cache-dir $W/cache --report $W/shipped-unseen
echo "baselines done $(date -u +%FT%TZ)"
text2lora eval -m base,desc-prompt,multitask-lora,t2l-sft --t2l-sft $NEW --groups $G --tasks $U --max-instances 60 $C \
    --cache-dir $W/cache --report $W/all-tasks-unseen
for r in all-tasks-seen shipped-unseen all-tasks-unseen; do python benchmarks/claims.py $W/$r > /dev/null; done
echo "all done $(date -u +%FT%TZ)"
