#!/usr/bin/env bash
# `make test-ecosystem`: text2lora's adapters in the real vLLM, llama.cpp and lm-eval, compared token for token with
# text2lora's own greedy output; writes the results section of docs/ecosystem.md (scripts/ecosystem/compare.py).
# The venvs live under $TEXT2LORA_HOME/ecosystem and are reused. llama-cpp-python compiles (~20 min on 2 cores) in
# the background, under nice 19, while vLLM and lm-eval are compared. Everything runs offline (HF_HUB_OFFLINE=1).
# Stages to skip: ECOSYSTEM_SKIP="llama lmeval" (the table then says "not run").
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T2L_PYTHON="${T2L_PYTHON:-.venv/bin/python}"
ECO="${TEXT2LORA_HOME:-$HOME/.cache/text2lora}/ecosystem"
SKIP=" ${ECOSYSTEM_SKIP:-} "
compare() { nice -n 10 "$T2L_PYTHON" scripts/ecosystem/compare.py "$@"; }
wanted() { [[ "$SKIP" != *" $1 "* ]]; }

rm -rf "$ECO/run/results"
wanted vllm && bash scripts/ecosystem/venvs.sh vllm
wanted lmeval && bash scripts/ecosystem/venvs.sh lmeval
LLAMA_PID=
if wanted llama; then
    bash scripts/ecosystem/venvs.sh llama >"$ECO/llama-build.out" 2>&1 &
    LLAMA_PID=$!
fi

compare prepare
wanted vllm && compare vllm
wanted lmeval && compare lmeval
if [ -n "$LLAMA_PID" ]; then
    echo "ecosystem: waiting for llama-cpp-python to compile ($ECO/llama.log)"
    if wait "$LLAMA_PID"; then compare llama; else cat "$ECO/llama-build.out" >&2; echo "ecosystem: llama-cpp-python did not build" >&2; fi
fi
compare doc
