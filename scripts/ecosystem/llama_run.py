"""Greedy generation with llama-cpp-python: the base GGUF plus one GGUF LoRA per job (runs in the llama venv).

Usage: python llama_run.py JOBS.json OUT.json. JOBS: {"base": path, "max_new_tokens": n, "eos": [ids],
"jobs": [{"name", "lora" (path or null), "prompts": [[token ids], ...]}]}. OUT: {name: [[generated ids], ...]}.
The prompts are token ids (text2lora's chat-templated prompts), so only the model and the adapter are compared.
"""

import json
import sys

from llama_cpp import Llama


def run_job(base: str, lora: str | None, prompts: list[list[int]], max_new_tokens: int, eos: set[int]) -> list[list[int]]:
    # One thread: on a shared machine ggml's threads spin-wait for descheduled peers (2 threads ran 10x slower here).
    llm = Llama(model_path=base, lora_path=lora, n_ctx=512, n_threads=1, n_threads_batch=1, n_batch=512, seed=0,
                verbose=False)
    outputs = []
    for prompt in prompts:
        out: list[int] = []
        for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(token))
            if token in eos or len(out) >= max_new_tokens:
                break
        outputs.append(out)
        print(f"llama_run: {lora or 'base'}: prompt {len(outputs)}/{len(prompts)}", file=sys.stderr, flush=True)
    del llm
    return outputs


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    eos = set(spec["eos"])
    result = {job["name"]: run_job(spec["base"], job["lora"], job["prompts"], spec["max_new_tokens"], eos)
              for job in spec["jobs"]}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
