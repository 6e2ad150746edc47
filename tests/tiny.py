"""The tiny models, tokenizer, task library and checkpoints every test builds in code (hermetic: no bundled
package, no download; seconds on a CPU).

* :func:`tiny_llama`: a random 3-layer Llama with GQA, in memory; :func:`trained_looking_copy` of a checkpoint;
* :func:`build_chat_model`: a tiny Llama over the character-level chat tokenizer, saved as a HF folder;
  :func:`build_library`: four word tasks (copy, reverse, upper, first); :func:`sft_config_dict` to train on them;
* :func:`build_tiny`: the serving tests' model and a hypernetwork checkpoint whose adapters are not no-ops.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from text2lora.data.library import write_index, write_task_instances
from text2lora.data.task import Instance, Task
from text2lora.data.testing import tiny_chat_tokenizer

TINY_LLAMA = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def tiny_llama(seed: int = 0, **overrides):
    """A random 3-layer Llama with GQA (q 32->32, v 32->16), in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, **overrides}))
    return model.eval()


def trained_looking_copy(ckpt: Path, out: Path, std: float) -> Path:
    """A copy of checkpoint ``ckpt`` with random (non-zero) head weights, standing in for a trained one."""
    from text2lora.checkpoint import load_checkpoint, save_checkpoint

    net, meta = load_checkpoint(ckpt)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.head.weight.values():
            p.normal_(0, std)
    meta.trained = True
    return save_checkpoint(net, meta, out)


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
                          descriptions=list(dict.fromkeys([desc, desc.replace("the input", "this")])), heldout_descriptions=[f"Task: {desc.lower()}"],
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
                 "log_every": 1, "seed": 0, "threads": 1, **loop},
    }


def build_tiny(root: Path) -> tuple[Path, Path]:
    """Write ``root/model`` (2 layers, hidden 32, the character-level chat tokenizer built in code) and
    ``root/ckpt``; return both. Hermetic: no bundled package, no download."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from text2lora.api import init_checkpoint
    from text2lora.checkpoint import load_checkpoint, save_checkpoint
    from text2lora.encoders import EncoderSpec
    from text2lora.data.testing import tiny_chat_tokenizer

    model_dir, ckpt = root / "model", root / "ckpt"
    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tokenizer), max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a peaked output distribution, so greedy decoding is stable under float noise
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    init_checkpoint(ckpt, base_model=str(model_dir), encoder=EncoderSpec(kind="base-lm", name=str(model_dir), dim=32))
    net, meta = load_checkpoint(ckpt)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained-looking head: description-dependent, non-zero B
        for name, p in net.named_parameters():
            if "head" in name and "weight" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    meta.trained = True
    save_checkpoint(net, meta, ckpt)
    return model_dir, ckpt


def with_examples(ckpt: Path, out: Path, *, max_examples: int = 4, std: float = 0.5, seed: int = 0) -> Path:
    """Checkpoint ``ckpt`` rebuilt with an examples conditioner, its head and conditioner weights random (so that
    descriptions and examples both change the adapters), standing in for a checkpoint trained with examples."""
    from text2lora.checkpoint import CheckpointMeta, build_from_meta, read_meta, save_checkpoint
    from text2lora.config import HyperNetConfig

    meta = read_meta(ckpt)
    hypernet = HyperNetConfig(**{**meta.hypernet.to_dict(), "examples": {"max_examples": max_examples}})
    meta = CheckpointMeta(hypernet=hypernet, base_model=meta.base_model, layout=meta.layout, encoder=meta.encoder,
                          trained=True)
    net = build_from_meta(meta, seed=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "head.weight" in name or name.startswith("examples."):
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return save_checkpoint(net, meta, out)
