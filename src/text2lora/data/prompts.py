"""Prompt formatting with the base model's chat template, and completion-only labels.

The user turn is :func:`user_message`: the instance input, then (multiple choice) the options as a list. Variants
for the evaluation baselines:

* ``description=...`` puts the task description above the (first) user turn;
* ``shots=[Instance, ...]`` adds k-shot examples as earlier user/assistant turns.

Public functions:

* ``build_messages(instance, *, description=None, shots=()) -> list[dict]``
* ``build_prompt(tokenizer, instance, *, description=None, shots=(), max_prompt_tokens=None) -> Prompt(text, input_ids)``:
  the chat-templated prompt with the generation prompt appended (for generation / scoring).
* ``encode_example(tokenizer, instance, *, description=None, shots=(), max_prompt_tokens=256, max_output_tokens=64,
  completion=None) -> {"input_ids", "labels"}``: prompt ids then completion ids + the template's end-of-turn token;
  labels are -100 on the prompt. For multiple choice the completion is the correct option's text.
* ``encode_options(tokenizer, instance, ...) -> list[dict]``: one encoding per option (log-likelihood scoring).
* ``collate(examples, pad_id, padding_side="right") -> dict``: padded ``input_ids``, ``attention_mask``,
  ``labels`` (-100 on pads) tensors; other keys (``task``, ``description``) pass through as lists.

Over-long prompts are cut: shots are dropped first (last shot first), then the input is cut in the middle
(its head and tail are kept, joined by `` ... ``) so that the question at the end of a passage survives.

Task text is plain text: a control token's spelling inside an input, a description or an answer (``<|im_end|>``)
is encoded as ordinary characters, never as the control token, exactly as ``text2lora serve`` encodes what users
send. Only the markers the chat template itself writes are control tokens. Training, evaluation and serving so see
the same ids for the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from text2lora.data.task import Instance

IGNORE_INDEX = -100
ELLIPSIS = " ... "


def user_message(instance: Instance, *, description: str | None = None) -> str:
    """The text of the user turn for one instance."""
    parts = []
    if description:
        parts.append(description.strip())
    if instance.input:
        parts.append(instance.input)
    if instance.options:
        parts.append("Options:\n" + "\n".join(f"- {o}" for o in instance.options))
    return "\n\n".join(parts)


def build_messages(
    instance: Instance, *, description: str | None = None, shots: Sequence[Instance] = ()
) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for i, shot in enumerate(shots):
        messages.append({"role": "user", "content": user_message(shot, description=description if i == 0 else None)})
        messages.append({"role": "assistant", "content": shot.output})
    messages.append({"role": "user", "content": user_message(instance, description=None if shots else description)})
    return messages


@dataclass
class Prompt:
    text: str
    input_ids: list[int]


def _template(tokenizer, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _template_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The templated conversation's ids: the template's markers as control tokens, the messages as plain text."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=False, sanitize_control_tokens=True))


def _ids(tokenizer, text: str) -> list[int]:
    """``text``'s ids as plain text (a control token's spelling in it is ordinary characters)."""
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def truncate_middle(tokenizer, text: str, max_tokens: int) -> str:
    """Cut ``text`` to about ``max_tokens`` tokens by removing its middle."""
    ids = _ids(tokenizer, text)
    if len(ids) <= max_tokens:
        return text
    if max_tokens <= 0:
        return ""
    head = (max_tokens + 1) // 2
    tail = max_tokens - head
    return tokenizer.decode(ids[:head]) + ELLIPSIS + (tokenizer.decode(ids[-tail:]) if tail else "")


def fit_user_message(tokenizer, instance: Instance, max_tokens: int) -> Instance | None:
    """``instance`` with its input cut in the middle so that :func:`user_message` fits ``max_tokens``
    (None when even an empty input would not fit)."""
    length = len(_ids(tokenizer, user_message(instance)))
    text, keep = instance.input, len(_ids(tokenizer, instance.input))
    for _ in range(4):
        excess = length - max_tokens
        if excess <= 0:
            return instance if text == instance.input else _with_input(instance, text)
        keep -= excess + (len(_ids(tokenizer, ELLIPSIS)) if text == instance.input else 0)
        if keep <= 0:
            return None
        text = truncate_middle(tokenizer, instance.input, keep)
        length = len(_ids(tokenizer, user_message(_with_input(instance, text))))
    return None


def build_prompt(
    tokenizer,
    instance: Instance,
    *,
    description: str | None = None,
    shots: Sequence[Instance] = (),
    max_prompt_tokens: int | None = None,
) -> Prompt:
    """The chat-templated prompt (generation prompt appended), cut to ``max_prompt_tokens``."""
    shots = list(shots)

    def render(inst: Instance) -> Prompt:
        messages = build_messages(inst, description=description, shots=shots)
        return Prompt(_template(tokenizer, messages), _template_ids(tokenizer, messages))

    prompt = render(instance)
    if max_prompt_tokens is None:
        return prompt
    while len(prompt.input_ids) > max_prompt_tokens and shots:
        shots.pop()
        prompt = render(instance)
    text, keep = instance.input, len(_ids(tokenizer, instance.input))
    # Cutting adds the ellipsis and may re-tokenise differently at the seams: shrink until it fits.
    for _ in range(4):
        excess = len(prompt.input_ids) - max_prompt_tokens
        if excess <= 0:
            break
        keep -= excess + (len(_ids(tokenizer, ELLIPSIS)) if text == instance.input else 0)
        if keep <= 0:  # the template and options alone are too long: nothing sensible to cut
            break
        text = truncate_middle(tokenizer, instance.input, keep)
        prompt = render(_with_input(instance, text))
    return prompt


def _with_input(instance: Instance, text: str) -> Instance:
    return Instance(input=text, output=instance.output, options=instance.options, answer=instance.answer,
                    references=instance.references)


def end_of_turn(tokenizer) -> str:
    """The text the chat template puts after an assistant answer (``<|im_end|>`` for SmolLM2)."""
    sentinel = "\u2063T2L\u2063"
    messages = [{"role": "user", "content": "x"}]
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": sentinel}], tokenize=False)
    suffix = full.split(sentinel, 1)[1] if sentinel in full else ""
    eos = tokenizer.eos_token or ""
    if eos and eos in suffix:
        return eos
    return suffix.strip().split("\n")[0] or eos


def encode_example(
    tokenizer,
    instance: Instance,
    *,
    description: str | None = None,
    shots: Sequence[Instance] = (),
    max_prompt_tokens: int | None = 256,
    max_output_tokens: int | None = 64,
    completion: str | None = None,
    add_end_of_turn: bool = True,
) -> dict[str, list[int]]:
    """Prompt + completion token ids, with labels only on the completion (and the end-of-turn token)."""
    prompt = build_prompt(tokenizer, instance, description=description, shots=shots,
                          max_prompt_tokens=max_prompt_tokens)
    target = _ids(tokenizer, instance.output if completion is None else completion)
    if max_output_tokens is not None:
        target = target[:max_output_tokens]
    if add_end_of_turn:  # the template's own marker: a control token
        target = target + list(tokenizer(end_of_turn(tokenizer), add_special_tokens=False)["input_ids"])
    return {"input_ids": prompt.input_ids + target, "labels": [IGNORE_INDEX] * len(prompt.input_ids) + target}


def encode_options(tokenizer, instance: Instance, **kwargs: Any) -> list[dict[str, list[int]]]:
    """One encoding per option of a multiple-choice instance (same prompt, each option as completion)."""
    if not instance.options:
        raise ValueError("encode_options needs a multiple-choice instance")
    return [encode_example(tokenizer, instance, completion=o, **kwargs) for o in instance.options]


def collate(examples: Sequence[dict[str, Any]], pad_id: int, *, padding_side: str = "right") -> dict[str, Any]:
    """Pad a list of encoded examples into tensors; non-token keys become lists."""
    import torch

    if padding_side not in ("right", "left"):
        raise ValueError("padding_side must be 'right' or 'left'")
    width = max(len(e["input_ids"]) for e in examples)
    batch = len(examples)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)  # (B, L)
    labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)  # (B, L)
    mask = torch.zeros((batch, width), dtype=torch.long)  # (B, L)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        cols = slice(0, n) if padding_side == "right" else slice(width - n, width)
        input_ids[row, cols] = torch.tensor(e["input_ids"], dtype=torch.long)
        labels[row, cols] = torch.tensor(e.get("labels", [IGNORE_INDEX] * n), dtype=torch.long)
        mask[row, cols] = 1
    out: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    for key in examples[0]:
        if key not in out:
            out[key] = [e.get(key) for e in examples]
    return out
