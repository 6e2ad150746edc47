"""Test helpers: a tiny character-level tokenizer with a ChatML chat template, built in code (no download).

``tiny_chat_tokenizer()`` returns a ``transformers.PreTrainedTokenizerFast`` with one token per printable ASCII
character (plus newline and tab), special tokens ``<|im_start|>``, ``<|im_end|>`` (eos), ``<pad>``, ``<unk>``,
and the same ChatML template shape as SmolLM2 (without its default system prompt). Token counts equal character
counts, which makes budget tests easy to reason about.
"""

from __future__ import annotations

import string

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]


def tiny_chat_tokenizer():
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tok.chat_template = CHATML_TEMPLATE
    tok.padding_side = "left"
    return tok
