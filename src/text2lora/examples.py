"""Worked examples beside a task description: what they are, how they are checked, read and encoded.

A hypernetwork whose config has ``examples`` (:class:`text2lora.config.ExamplesConfig`) generates an adapter from
a description *and* up to ``max_examples`` labelled examples; the examples shape the adapter and stay out of the
prompt. Everything that takes examples from a user (the CLI's ``--examples FILE``, :meth:`text2lora.T2L.generate`,
the server's ``examples`` field) goes through :func:`check_examples`, one validator with one set of limits.

* :class:`Example` -- one ``input`` -> ``output`` pair (both non-empty strings).
* :func:`check_examples` -- dicts, pairs or Examples in, a list of Examples out, or one clear error.
* :func:`read_examples_file` -- the task-file format (JSON Lines: ``{"input", "output"}`` or
  ``{"input", "options", "answer"}`` per line, an optional ``{"description": ...}`` header line).
* :func:`example_from_instance` -- a library instance as an example (multiple choice: options in the input).
* :func:`encode_examples` -- rows of examples -> ``(features (N, K, 2, D), mask (N, K))`` for the hypernetwork.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from text2lora.errors import Text2LoraError

MAX_EXAMPLES = 64
"""The most examples one request may carry (a checkpoint may read fewer: its ``max_examples``)."""
MAX_EXAMPLE_CHARS = 4_000
"""The longest input or output of one example, in characters (the encoder reads 256 tokens of each)."""
MAX_EXAMPLES_FILE_BYTES = 4 * 1024 * 1024
EXAMPLES_ONLY_DESCRIPTION = "Do the task that the examples show."
"""The description a sample gets when SFT trains it on its examples alone (``data.shots_only_prob``), so that the
hypernetwork must read the task from the examples; a user with examples and no description can pass it."""


@dataclass(frozen=True)
class Example:
    """One worked example of a task."""

    input: str
    output: str

    def to_json(self) -> dict[str, str]:
        return {"input": self.input, "output": self.output}


def check_examples(examples: Any, *, limit: int = MAX_EXAMPLES, where: str = "examples") -> list[Example]:
    """Validate user examples: a list of ``{"input", "output"}`` mappings, ``(input, output)`` pairs or
    :class:`Example` s, at most ``limit`` of them, each field a non-empty string of at most
    :data:`MAX_EXAMPLE_CHARS` characters. Whitespace runs are squeezed, as descriptions' are."""
    if examples is None:
        return []
    if isinstance(examples, (str, bytes, dict)) or not isinstance(examples, Sequence):
        raise Text2LoraError(f"{where} must be a list of {{\"input\": ..., \"output\": ...}} objects")
    if len(examples) > limit:
        raise Text2LoraError(f"{where}: {len(examples)} examples; the limit is {limit}")
    out = []
    for i, ex in enumerate(examples):
        label = f"{where}[{i}]"
        if isinstance(ex, Example):
            pair = (ex.input, ex.output)
        elif isinstance(ex, dict):
            unknown = sorted(set(ex) - {"input", "output"})
            if unknown:
                raise Text2LoraError(f"{label} has the unknown field {str(unknown[0])[:40]!r}; an example has "
                                     "'input' and 'output'")
            if "input" not in ex or "output" not in ex:
                raise Text2LoraError(f"{label} needs both 'input' and 'output'")
            pair = (ex["input"], ex["output"])
        elif isinstance(ex, (list, tuple)) and len(ex) == 2:
            pair = (ex[0], ex[1])
        else:
            raise Text2LoraError(f"{label} must be an object with 'input' and 'output'")
        fields = []
        for name, value in zip(("input", "output"), pair):
            if not isinstance(value, str):
                raise Text2LoraError(f"{label}.{name} must be a string, got {type(value).__name__}")
            if len(value) > MAX_EXAMPLE_CHARS:
                raise Text2LoraError(f"{label}.{name} is {len(value)} characters; the limit is {MAX_EXAMPLE_CHARS}")
            text = " ".join(value.split())
            if not text:
                raise Text2LoraError(f"{label}.{name} is empty")
            _check_encodable(text, f"{label}.{name}")
            fields.append(text)
        out.append(Example(*fields))
    return out


def _check_encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Text2LoraError(f"{where} is not valid Unicode text (a lone surrogate?)") from None


def read_examples_file(path: str | os.PathLike, *, limit: int = MAX_EXAMPLES) -> list[Example]:
    """Examples from a task file (JSON Lines, the format ``text2lora eval --task-file`` reads). Any bad line is an
    error naming it: generating from a silently shortened list would mislead."""
    from text2lora.data.prompts import user_message
    from text2lora.data.user_formats import _jsonl_instance

    path = Path(path)
    if not path.is_file():
        raise Text2LoraError(f"examples file not found: {path}" if not path.exists() else f"{path} is not a file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_EXAMPLES_FILE_BYTES + 1)
        if len(raw) > MAX_EXAMPLES_FILE_BYTES:
            raise Text2LoraError(f"examples file {path} is over {MAX_EXAMPLES_FILE_BYTES // (1024 * 1024)} MiB")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Text2LoraError(f"examples file {path} is not UTF-8 text") from None
    except OSError as e:
        raise Text2LoraError(f"cannot read examples file {path}: {e.strerror}") from None
    examples = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise Text2LoraError(f"{path}:{lineno}: not valid JSON ({msg})") from None
        if not isinstance(obj, dict):
            raise Text2LoraError(f"{path}:{lineno}: expected a JSON object")
        if "input" not in obj and "description" in obj and not examples:
            continue  # the task file's header line
        try:
            inst = _jsonl_instance(obj)
        except ValueError as e:
            raise Text2LoraError(f"{path}:{lineno}: {e}") from None
        examples.append({"input": user_message(inst), "output": inst.output})
        if len(examples) > limit:
            raise Text2LoraError(f"examples file {path} has more than {limit} examples; the limit is {limit}")
    if not examples:
        raise Text2LoraError(f"examples file {path} has no examples")
    return check_examples(examples, limit=limit, where=str(path))


def example_from_instance(instance) -> Example:
    """A task-library :class:`~text2lora.data.task.Instance` as an example: the user turn the model sees (input,
    then the options for multiple choice) and the target output."""
    from text2lora.data.prompts import user_message

    return Example(" ".join(user_message(instance).split()) or "(empty)", " ".join(instance.output.split()) or "(empty)")


def shuffled_outputs(examples: Sequence[Example]) -> list[Example]:
    """The same inputs and outputs, each input paired with another example's output (a cyclic shift): the control
    that tells whether an adapter reads the pairs or only their contents."""
    if len(examples) < 2:
        return list(examples)
    outputs = [e.output for e in examples]
    return [Example(e.input, outputs[(i + 1) % len(outputs)]) for i, e in enumerate(examples)]


def encode_examples(encode: Callable[[list[str]], torch.Tensor], rows: Sequence[Sequence[Example]], dim: int,
                    max_examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of examples -> features ``(N, K, 2, D)`` (input and output embeddings) and a mask ``(N, K)``, with
    K the longest row (at least 1). ``encode`` maps texts to ``(n, D)`` embeddings; each distinct text is encoded
    once. A row longer than ``max_examples`` is an error."""
    for i, row in enumerate(rows):
        if len(row) > max_examples:
            raise Text2LoraError(f"{len(row)} examples for adapter {i + 1}; this checkpoint reads at most "
                                 f"{max_examples}")
    k = max([len(r) for r in rows] + [1])
    feats = torch.zeros(len(rows), k, 2, dim)
    mask = torch.zeros(len(rows), k, dtype=torch.bool)
    texts = sorted({t for row in rows for ex in row for t in (ex.input, ex.output)})
    if texts:
        table = encode(texts)
        index = {t: j for j, t in enumerate(texts)}
        for i, row in enumerate(rows):
            for j, ex in enumerate(row):
                feats[i, j, 0] = table[index[ex.input]]
                feats[i, j, 1] = table[index[ex.output]]
                mask[i, j] = True
    return feats, mask


def _is_pair(row: Any) -> bool:
    return isinstance(row, (list, tuple)) and len(row) == 2 and all(isinstance(x, str) for x in row)


def example_rows(examples: Any, n: int) -> list[list[Example]]:
    """Examples for ``n`` adapters: None (none), one list shared by all, or one list per adapter."""
    if examples is None:
        return [[] for _ in range(n)]
    per_row = (isinstance(examples, (list, tuple)) and len(examples) > 0
               and all(isinstance(r, (list, tuple)) and not _is_pair(r) for r in examples))
    if not per_row:
        shared = check_examples(examples)
        return [list(shared) for _ in range(n)]
    if len(examples) != n:
        raise Text2LoraError(f"{len(examples)} lists of examples for {n} descriptions: give one per description, "
                             "or one list for all")
    return [check_examples(r, where=f"examples for description {i + 1}") for i, r in enumerate(examples)]


def examples_digest(examples: Sequence[Example]) -> str:
    """A short stable id of a list of examples (for adapter ids and provenance)."""
    import hashlib

    data = json.dumps([e.to_json() for e in examples], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]
