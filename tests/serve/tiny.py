"""A tiny random Llama, its tokenizer and a hypernetwork checkpoint whose adapters are not no-ops."""

from __future__ import annotations

from pathlib import Path

import torch


def build_tiny(root: Path) -> tuple[Path, Path]:
    """Write ``root/model`` (2 layers, hidden 32, the bundled SmolLM2 tokenizer) and ``root/ckpt``; return both."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from text2lora.api import init_checkpoint
    from text2lora.checkpoint import load_checkpoint, save_checkpoint
    from text2lora.encoders import EncoderSpec
    from text2lora.models.base import load_tokenizer

    model_dir, ckpt = root / "model", root / "ckpt"
    tokenizer = load_tokenizer("bundled:smollm2-135m-instruct")
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
