"""Task-description embeddings computed once per run (the encoder is frozen) and cached on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from text2lora.errors import Text2LoraError


class EmbeddingTable:
    def __init__(self, texts: list[str], table: torch.Tensor) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        self.table = table  # (N, D)

    @classmethod
    def build(cls, encoder, texts: list[str], cache_dir: Path | None = None, batch: int = 64) -> EmbeddingTable:
        from safetensors.torch import load_file

        texts = sorted(set(texts))
        key = hashlib.sha256(json.dumps([encoder.spec.to_dict(), texts]).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"emb-{key}.safetensors" if cache_dir else None
        if path is not None and path.is_file():
            return cls(texts, load_file(str(path))["table"])
        rows = []
        for start in tqdm(range(0, len(texts), batch), desc="embed descriptions", disable=len(texts) <= batch):
            rows.append(encoder.encode(texts[start:start + batch], label="training description"))  # named by its words
        table = torch.cat(rows) if rows else torch.zeros(0, encoder.spec.dim)
        if path is not None:
            from safetensors.torch import save

            from text2lora.paths import atomic_write_bytes

            atomic_write_bytes(path, save({"table": table.contiguous()}))  # (safetensors' save_file writes 0600)
        return cls(texts, table)

    def lookup(self, texts: list[str]) -> torch.Tensor:
        try:
            return self.table[[self.index[t] for t in texts]]
        except KeyError as e:
            raise Text2LoraError(f"description not in the embedding table: {str(e)[:80]}") from None
