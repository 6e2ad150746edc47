"""A tiny task library and a tiny chat model built in code, for training tests (seconds on CPU)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from text2lora.data.library import write_index, write_task_instances
from text2lora.data.task import Instance, Task
from text2lora.data.testing import tiny_chat_tokenizer

WORDS = ["cat", "dog", "sun", "map", "red", "ink", "owl", "pen", "cup", "hat", "box", "fig", "jam", "kit"]
TASKS = {
    "copy": ("Repeat the input word exactly.", lambda w: w),
    "reverse": ("Write the input word backwards.", lambda w: w[::-1]),
    "upper": ("Write the input word in capital letters.", lambda w: w.upper()),
    "first": ("Answer with the first letter of the word.", lambda w: w[0]),
}


def build_library(root: Path, n: int = 24) -> Path:
    rng = random.Random(0)
    tasks = []
    for i, (name, (desc, fn)) in enumerate(TASKS.items()):
        words = [rng.choice(WORDS) for _ in range(n)]
        instances = [Instance(input=w, output=fn(w)) for w in words]
        splits = ["train"] * (n - 8) + ["validation"] * 4 + ["test"] * 4
        write_task_instances(root, name, instances, splits)
        tasks.append(Task(name=name, source=name, definition=desc, metric="generation",
                          descriptions=list(dict.fromkeys([desc, desc.replace("the input", "this")])), eval_descriptions=[f"Task: {desc.lower()}"],
                          split="unseen" if name == "first" else "seen",
                          counts={"train": n - 8, "validation": 4, "test": 4, "total": n}))
    write_index(root, tasks, meta={"fixture": True}, dropped=[])
    return root


def all_descriptions() -> list[str]:
    out = []
    for desc, _ in TASKS.values():
        out += [desc, desc.replace("the input", "this"), f"Task: {desc.lower()}"]
    return list(dict.fromkeys(out))


def build_chat_model(root: Path) -> Path:
    """A tiny Llama whose vocabulary is the character tokenizer's, saved with it as a HF folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_chat_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=256, initializer_range=0.3,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    LlamaForCausalLM(config).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def sft_config_dict(model_dir: Path, library: Path, **loop) -> dict:
    return {
        "base_model": str(model_dir),
        "hypernet": {"variant": "L", "latent": 16, "head_in": 32},
        "encoder": {"kind": "one-hot", "name": "", "dim": 0, "tasks": all_descriptions()},
        "data": {"library": str(library), "tasks_per_batch": 3, "examples_per_task": 2, "max_prompt_tokens": 64,
                 "max_output_tokens": 8, "val_instances_per_task": 4},
        "loop": {"steps": 12, "lr": 3e-3, "warmup_ratio": 0.1, "eval_every": 6, "save_every": 4, "keep_last": 5,
                 "log_every": 1, "seed": 0, "num_threads": 1, **loop},
    }
