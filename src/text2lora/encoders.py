"""Task-description encoders: text in, one fixed-size embedding per description out.

* ``sentence-transformers``: any sentence-transformers model (default: the bundled all-MiniLM-L6-v2; the paper
  used gte-large-en-v1.5). Embeddings are L2-normalised.
* ``base-lm``: the base model's own last-token hidden state (no second model to ship).
* ``one-hot``: a task-id baseline; only the task names it was built with are valid "descriptions".

Build one from a JSON-able spec with :func:`build_encoder`; the spec is stored in every checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch

from text2lora.checks import MAX_DIM, int_in, short_repr
from text2lora.errors import Text2LoraError
from text2lora.models.bundled import BUNDLED_ENCODER

log = logging.getLogger(__name__)

ENCODER_KINDS = ("sentence-transformers", "base-lm", "one-hot")
MAX_DESCRIPTION_CHARS = 20_000


@dataclass
class EncoderSpec:
    """What a checkpoint needs to rebuild its encoder."""

    kind: str = "sentence-transformers"
    name: str = BUNDLED_ENCODER  #: model id/dir (one-hot: unused)
    dim: int = 384
    tasks: list[str] = field(default_factory=list)  #: one-hot only: the known task names, in id order

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise Text2LoraError(f"unknown encoder kind {short_repr(self.kind)}; choose one of {', '.join(ENCODER_KINDS)}")
        if not isinstance(self.name, str):
            raise Text2LoraError(f"encoder.name must be a string, got {short_repr(self.name)}")
        int_in(self.dim, "encoder.dim", 0, MAX_DIM)  # 0: not known yet (filled in when the encoder loads)
        if not isinstance(self.tasks, list) or not all(isinstance(t, str) for t in self.tasks):
            raise Text2LoraError("encoder.tasks must be a list of task names")

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(Protocol):
    spec: EncoderSpec

    def encode(self, texts: list[str], *, label: str = "description", warn: bool = True) -> torch.Tensor:
        """(N, dim) float32. ``label`` names the texts in warnings ("description": by their position; anything
        else, e.g. "example text", by their opening words); ``warn=False`` leaves texts the encoder cuts unreported
        (a caller that reports them itself, see :meth:`SentenceTransformerEncoder.too_long`)."""
        ...


class DescriptionTooLong(Text2LoraError):
    """A description over the length limit (HTTP 400 ``description_too_long``)."""

    code = "description_too_long"


def check_descriptions(texts: list[str], max_chars: int = MAX_DESCRIPTION_CHARS) -> list[str]:
    """Reject empty or absurd descriptions before any model runs: the one description check of the CLI, the API
    and the server (which passes its own, usually tighter, ``max_chars``)."""
    if not texts:
        raise Text2LoraError("no description given")
    cleaned = []
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise Text2LoraError(f"description {i + 1} is empty" if len(texts) > 1 else "the description is empty")
        if len(t) > max_chars:
            what = "the task description" if len(texts) == 1 else f"description {i + 1}"
            raise DescriptionTooLong(f"{what} is {len(t)} characters; the limit is {max_chars}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: from invalid UTF-8 in argv or a file, or a JSON escape
            raise Text2LoraError(f"{'the description' if len(texts) == 1 else f'description {i + 1}'} is not valid "
                                 f"UTF-8 text (undecodable bytes or a lone surrogate at character {e.start + 1})") from None
        cleaned.append(" ".join(t.split()))
    return cleaned


def _opening(text: str, words: int = 6) -> str:
    """A text's first words, quoted, to name it in a message."""
    head = text.split()[:words]
    return repr(" ".join(head) + (" ..." if len(text.split()) > words else ""))


class SentenceTransformerEncoder:
    def __init__(self, spec: EncoderSpec, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        from text2lora.models.bundled import resolve_model

        try:
            self.model = SentenceTransformer(resolve_model(spec.name), device=device)
        except (OSError, ValueError) as e:
            raise Text2LoraError(f"cannot load encoder {spec.name!r}: {str(e).splitlines()[0]}") from None
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension()
        if spec.dim != dim:
            spec = EncoderSpec(spec.kind, spec.name, dim, spec.tasks)
        self.spec = spec
        self.max_tokens = int(self.model.max_seq_length)

    def too_long(self, texts: list[str]) -> list[tuple[int, int]]:
        """(position, tokens) of each text longer than the encoder reads (it keeps the first ``max_tokens``)."""
        out = []
        for i, t in enumerate(texts):
            if len(t) < self.max_tokens - 2:  # a token spans at least one character: cannot be too long
                continue
            # verbose=False: counting is the point here, so transformers' own "too long ... indexing errors"
            # warning (untrue: encode() truncates) must not reach the user beside ours
            n = len(self.model.tokenizer(t, add_special_tokens=True, verbose=False)["input_ids"])
            if n > self.max_tokens:
                out.append((i, n))
        return out

    def encode(self, texts: list[str], *, label: str = "description", warn: bool = True) -> torch.Tensor:
        texts = check_descriptions(texts)
        for i, n in self.too_long(texts) if warn else ():
            name = f"{label} {i + 1}" if label == "description" else f"{label} {_opening(texts[i])}"
            log.warning("%s is %d tokens; the encoder reads the first %d and ignores the rest", name, n,
                        self.max_tokens)
        with torch.inference_mode():
            emb = self.model.encode(
                texts, convert_to_tensor=True, normalize_embeddings=True, batch_size=64, show_progress_bar=False
            )
        return emb.float().cpu().clone()


class BaseLMEncoder:
    """Last-token hidden state of a causal LM (mean of the final layer at the last real token)."""

    def __init__(self, spec: EncoderSpec, device: str = "cpu", model=None, tokenizer=None) -> None:
        if model is None:
            from text2lora.models.base import load_base_model

            model, tokenizer = load_base_model(spec.name, device=device)
        self.model, self.tokenizer = model, tokenizer
        dim = int(model.config.get_text_config().hidden_size)
        self.spec = EncoderSpec(spec.kind, spec.name, dim, spec.tasks)
        self.max_tokens = 512

    def encode(self, texts: list[str], *, label: str = "description", warn: bool = True) -> torch.Tensor:
        texts = check_descriptions(texts)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_tokens)
        enc = enc.to(self.model.device)
        position_ids = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(**enc, position_ids=position_ids, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # (N, T, H), left-padded: the last position is the last real token
        emb = hidden[:, -1, :].float()
        return torch.nn.functional.normalize(emb, dim=-1).cpu()


class OneHotEncoder:
    def __init__(self, spec: EncoderSpec) -> None:
        if not spec.tasks:
            raise Text2LoraError("a one-hot encoder needs the list of task names")
        tasks = list(dict.fromkeys(spec.tasks))  # de-duplicated, order kept
        self.spec = EncoderSpec(spec.kind, "", len(tasks), tasks)
        self.index = {t: i for i, t in enumerate(tasks)}

    def encode(self, texts: list[str], *, label: str = "description", warn: bool = True) -> torch.Tensor:
        texts = check_descriptions(texts)
        unknown = [t for t in texts if t not in self.index]
        if unknown:
            raise Text2LoraError(f"one-hot encoder: unknown task {unknown[0]!r} (it knows {len(self.index)} task names)")
        ids = torch.tensor([self.index[t] for t in texts])
        return torch.nn.functional.one_hot(ids, len(self.index)).float()


def build_encoder(spec: EncoderSpec | dict, device: str = "cpu") -> Encoder:
    if isinstance(spec, dict):
        spec = EncoderSpec(**spec)
    if spec.kind == "sentence-transformers":
        return SentenceTransformerEncoder(spec, device)
    if spec.kind == "base-lm":
        return BaseLMEncoder(spec, device)
    return OneHotEncoder(spec)
