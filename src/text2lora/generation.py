"""Batched greedy generation with an optional per-sample adapter (the demo, evaluation and serving use it)."""

from __future__ import annotations

import contextlib

import torch

from text2lora.lora import LoraWeights, apply_lora


def chat_prompt(tokenizer, user_text: str, system: str | None = None) -> str:
    """The base model's chat template around one user turn, ready for the assistant's answer."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return (system + "\n\n" if system else "") + user_text + "\n"


def _left_padded(ids: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(ids), width), dtype=torch.long)  # (B, L)
    for i, row in enumerate(ids):
        if row:
            input_ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


@torch.inference_mode()
def generate_texts(
    model,
    tokenizer,
    prompts: list[str] | list[list[int]],
    *,
    lora: LoraWeights | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 16,
) -> list[str]:
    """Greedy completions of already-templated ``prompts``: texts (tokenised as they are, control-token spellings
    included) or token ids (``text2lora.data.prompts.build_prompt(...).input_ids``, in which task text is plain
    text); ``lora`` holds one adapter per prompt, or one for all."""
    if lora is not None and lora.n not in (1, len(prompts)):
        raise ValueError(f"{lora.n} adapters for {len(prompts)} prompts")
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        if chunk and not isinstance(chunk[0], str):
            enc = _left_padded(chunk, tokenizer.pad_token_id, model.device)
        else:
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        sub = None
        if lora is not None:
            sub = lora if lora.n == 1 else lora.select(slice(start, start + len(chunk)))
        ctx = apply_lora(model, sub) if sub is not None else contextlib.nullcontext()
        with ctx:
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        outputs.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    return outputs
