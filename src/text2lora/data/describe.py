"""Write task descriptions with a local instruct model (``text2lora data describe``).

For each task the model is prompted with the task's definition and a few training examples, in several
phrasings (``STYLES``), and sampled in batches. Candidates are cleaned (first paragraph, no "Sure, here is"
preamble, no quotes or labels) and rejected when they are:

* empty, shorter than ``min_words`` words or longer than ``max_chars`` characters;
* duplicates or near-duplicates (word-set Jaccard >= ``max_overlap``) of an accepted one or of the task's own;
* leaking a test answer: a test output that is specific to its instance (not a label shared by many
  instances, at least 4 characters) appears in the text;
* off-topic, when ``min_similarity`` is set: cosine similarity to the definition, in the bundled MiniLM
  sentence encoder, below it.

Accepted ones are shuffled (seeded); the first ``k_eval`` are held out for evaluation, the next ``k - 1`` join
the task's own description for training. Each task's result is cached in ``<library>/descriptions/<name>.json``
with the settings that made it, so a rerun skips finished tasks (resumable) and ``index.json`` is refreshed at
the end. Tasks whose shipped descriptions (:func:`text2lora.data.library.shipped_descriptions`) were written with
the same settings count as cached: a fresh clone has nothing to describe at the default settings. ``describe_library(root, DescribeConfig(...), names=None, limit=None) -> DescribeReport``.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from text2lora.data.fit import rng_for
from text2lora.data.library import TaskLibrary, description_record, descriptions_file, refresh_descriptions
from text2lora.data.task import Instance, Task, heldout_of
from text2lora.models.bundled import BUNDLED_BASE
from text2lora.paths import write_json

log = logging.getLogger(__name__)

PROMPT_VERSION = 1
REFRESH_EVERY = 10
"""Tasks between two merges of the description caches into index.json during a run."""
STYLES = (
    "Describe this task in one sentence, as an instruction to the person who will do it.",
    "In one or two sentences, explain what this task asks for. Start with \"In this task\".",
    "Write a short instruction (one sentence) that tells someone exactly what to do in this task.",
    "Summarize the goal of this task in one clear sentence.",
)


@dataclass
class DescribeConfig:
    """Settings of one description run (the cache records them; a change re-describes)."""

    model: str = BUNDLED_BASE
    """Instruct model: a bundled name, a Hugging Face id or a local directory."""
    k: int = 9
    """Training descriptions per task, the task's own included (the shipped ones: 8 written + the task's own)."""
    k_eval: int = 3
    """Held-out descriptions per task (evaluation)."""
    examples: int = 1
    """Training examples shown in the prompt (their text must not be copied into a description)."""
    prompts_per_round: int = 3
    """Differently phrased prompts per generation call (each prompt's prefill is paid once)."""
    samples_per_prompt: int = 8
    """Sampled descriptions per prompt and call."""
    rounds: int = 2
    """Generation calls per task at most (stops early once enough are accepted)."""
    max_new_tokens: int = 40
    temperature: float = 0.8
    top_p: float = 0.95
    max_definition_tokens: int = 96
    max_example_tokens: int = 40
    min_words: int = 5
    max_chars: int = 300
    max_overlap: float = 0.85
    min_similarity: float | None = 0.45
    """Reject candidates whose MiniLM cosine similarity to the definition is lower (None: no check)."""
    seed: int = 0
    threads: int | None = None
    """CPU threads for torch (None: torch's default). On a shared CPU, 1 is several times faster than an
    oversubscribed 2 (measured here: a batch-24 decode step took 1.1 s with 1 thread, 6.5 s with 2)."""

    def cache_key(self) -> dict:
        keep = ("model", "k", "k_eval", "examples", "temperature", "top_p", "min_words", "max_chars",
                "max_overlap", "min_similarity", "seed", "max_definition_tokens", "max_example_tokens")
        return {"prompt_version": PROMPT_VERSION, **{k: v for k, v in asdict(self).items() if k in keep}}


@dataclass
class DescribeReport:
    described: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    short: dict[str, int] = field(default_factory=dict)
    """Tasks that got fewer accepted descriptions than asked for: name -> how many."""
    rejected: Counter = field(default_factory=Counter)
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ prompting
def _cut(tokenizer, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]) + " ..."


def describe_prompt(tokenizer, task: Task, examples: Sequence[Instance], style: str,
                    config: DescribeConfig) -> str:
    """The chat-templated prompt asking for one description of ``task``."""
    parts = [f"Task instructions: {_cut(tokenizer, task.definition, config.max_definition_tokens)}"]
    for ex in examples:
        text = _cut(tokenizer, ex.input, config.max_example_tokens)
        if ex.options:
            text += "\nOptions: " + " | ".join(ex.options)
        parts.append(f"Example input: {text}\nExample output: {_cut(tokenizer, ex.output, 24)}")
    parts.append(style)
    messages = [{"role": "user", "content": "\n\n".join(parts)}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


_PREAMBLE = re.compile(r"^(sure|certainly|of course|here('s| is| are)|okay|ok)\b[^\n]*?[:!.]\s*", re.I)
_LABEL = re.compile(r"^(task description|description|instruction|task|summary|answer|output)\s*:\s*", re.I)


def clean_description(text: str, max_chars: int | None = None) -> str:
    """First paragraph, without a chatty preamble, a leading label or wrapping quotes; when it is over
    ``max_chars`` or ends mid-sentence (stopped by the token limit), cut after the last full sentence."""
    text = text.strip()
    for _ in range(3):  # "Sure! Here is a description: ..." has two preambles
        text = _PREAMBLE.sub("", text, count=1).strip()
    text = text.split("\n\n")[0].strip()
    text = _LABEL.sub("", text).strip()
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] in "\"'“" and text[-1] in "\"'”":
        text = text[1:-1].strip()
    limit = len(text) if max_chars is None else max_chars
    if len(text) > limit or not text.endswith((".", "!", "?", '"', ")")):
        # over-long, or stopped by the token limit mid-sentence: keep the complete sentences, if any
        ends = [m.end() for m in re.finditer(r"[.!?](\s|$)", text[: limit + 1])]
        if ends:
            text = text[: ends[-1]].strip()
    return text


# --------------------------------------------------------------------------------------------------- filters
COPY_NGRAM = 6

def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def leak_strings(instances: Sequence[Instance], test: Sequence[Instance]) -> list[str]:
    """Normalised test answers specific enough that a description must not contain them."""
    counts = Counter(_norm(i.output) for i in instances)
    out = set()
    for inst in test:
        for ref in inst.references or [inst.output]:
            norm = _norm(ref)
            if len(norm) >= 4 and counts[norm] <= 1:
                out.add(norm)
    return sorted(out)


def ngrams(text: str, n: int = COPY_NGRAM) -> set[tuple[str, ...]]:
    words = _norm(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def reject_reason(candidate: str, accepted: Sequence[str], leaks: Sequence[str], config: DescribeConfig,
                  copied: set[tuple[str, ...]] = frozenset()) -> str | None:
    """Why a cleaned candidate is rejected (None: keep it). ``accepted`` includes the task's own; ``copied``
    holds the word n-grams of the examples shown in the prompt, which a description must not repeat."""
    if not candidate:
        return "empty"
    if len(candidate.split()) < config.min_words:
        return "too short"
    if len(candidate) > config.max_chars:
        return "too long"
    norm = f" {_norm(candidate)} "
    if any(f" {leak} " in norm for leak in leaks):
        return "leaks a test answer"
    if copied and ngrams(candidate) & copied:
        return "copies an example"
    words = _words(candidate)
    for other in accepted:
        if _norm(other) == norm.strip():
            return "duplicate"
        theirs = _words(other)
        if words and theirs and len(words & theirs) / len(words | theirs) >= config.max_overlap:
            return "near duplicate"
    return None


# ---------------------------------------------------------------------------------------------- generation
def _generate(model, tokenizer, prompts: list[str], config: DescribeConfig, seed: int) -> list[str]:
    """``samples_per_prompt`` sampled replies per prompt, grouped prompt by prompt.

    Each prompt is encoded once and its key/value cache repeated for the samples: ``generate``'s own
    ``num_return_sequences`` would re-encode the prompt for every sample, which dominates the cost on a CPU.
    """
    import torch

    n = config.samples_per_prompt
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]  # (P, L), left padded
    torch.manual_seed(seed)
    with torch.inference_mode():
        kwargs = {}
        if ids.shape[1] > 1:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (P, L)
            prefix = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                           use_cache=True)
            cache = prefix.past_key_values
            if hasattr(cache, "batch_repeat_interleave"):
                cache.batch_repeat_interleave(n)
                kwargs["past_key_values"] = cache
        out = model.generate(
            input_ids=ids.repeat_interleave(n, dim=0), attention_mask=mask.repeat_interleave(n, dim=0),
            do_sample=True, temperature=config.temperature, top_p=config.top_p,
            max_new_tokens=config.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs,
        )  # (P * n, L + new)
    return tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)


def describe_task(task: Task, library: TaskLibrary, model, tokenizer, config: DescribeConfig,
                  similarity: Callable[[str, list[str]], list[float]] | None, report: DescribeReport) -> dict:
    """Generate, filter and split one task's descriptions; returns the cache record."""
    rng = rng_for(config.seed, "describe", task.name)
    train = library.instances(task.name, "train") or library.instances(task.name)
    examples = rng.sample(train, min(config.examples, len(train)))
    leaks = leak_strings(library.instances(task.name), library.instances(task.name, "test"))
    own = task.description
    want = config.k - 1 + config.k_eval
    accepted: list[str] = []
    rejected: Counter = Counter()
    copied = set().union(*(ngrams(f"{ex.input} {ex.output}") for ex in examples)) - ngrams(task.definition)
    for round_ in range(config.rounds):
        styles = [STYLES[(round_ * config.prompts_per_round + i) % len(STYLES)] for i in range(config.prompts_per_round)]
        prompts = [describe_prompt(tokenizer, task, examples, style, config) for style in styles]
        seed = rng.randrange(2**31)
        candidates = [clean_description(t, config.max_chars) for t in _generate(model, tokenizer, prompts, config, seed)]
        scores = similarity(task.definition, candidates) if similarity else [1.0] * len(candidates)
        for cand, score in zip(candidates, scores):
            reason = reject_reason(cand, [own, *accepted], leaks, config, copied)
            if reason is None and config.min_similarity is not None and score < config.min_similarity:
                reason = "off topic"
            if reason:
                rejected[reason] += 1
            else:
                accepted.append(cand)
        if len(accepted) >= want:
            break
    rng.shuffle(accepted)
    n_eval = min(config.k_eval, len(accepted) // 2 if len(accepted) < want else config.k_eval)
    record = {
        "settings": config.cache_key(),
        "heldout_descriptions": accepted[:n_eval],
        "descriptions": [own, *accepted[n_eval:n_eval + config.k - 1]],
        "rejected": dict(rejected),
    }
    report.rejected.update(rejected)
    if len(accepted) < want:
        report.short[task.name] = len(accepted)
    return record


def _similarity_fn() -> Callable[[str, list[str]], list[float]]:
    from sentence_transformers import SentenceTransformer

    from text2lora.models.bundled import BUNDLED_ENCODER, resolve_model

    encoder = SentenceTransformer(resolve_model(BUNDLED_ENCODER), device="cpu")

    def similarity(reference: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        emb = encoder.encode([reference, *texts], normalize_embeddings=True, convert_to_numpy=True)
        return [float(x) for x in emb[1:] @ emb[0]]

    return similarity


def describe_library(
    root: str | Path | None,
    config: DescribeConfig,
    *,
    names: Sequence[str] | None = None,
    limit: int | None = None,
    progress: bool = True,
    load_model: Callable | None = None,
) -> DescribeReport:
    """Describe the library's tasks (or ``names``), skipping those whose cache matches ``config``."""
    from tqdm import tqdm

    library = TaskLibrary.load(root)
    tasks = [library.task(n) for n in names] if names else list(library.tasks)
    if limit is not None:
        tasks = tasks[:limit]
    report = DescribeReport()
    todo = []
    for task in tasks:
        record = description_record(library.root, task)
        if record is not None and record.get("settings") == config.cache_key():
            report.cached.append(task.name)
        else:
            todo.append(task)
    start = time.perf_counter()
    if todo:
        if config.threads is not None:
            import torch

            torch.set_num_threads(config.threads)
        if load_model is None:
            from text2lora.models.base import load_base_model as load_model
        model, tokenizer = load_model(config.model)
        tokenizer.padding_side = "left"
        similarity = _similarity_fn() if config.min_similarity is not None else None
        rng_for(config.seed, "describe-order").shuffle(todo)  # an interrupted run still covers tasks evenly
        for i, task in enumerate(tqdm(todo, desc="describing tasks", unit="task", disable=not progress), 1):
            record = describe_task(task, library, model, tokenizer, config, similarity, report)
            write_json(descriptions_file(library.root, task.name), record)
            report.described.append(task.name)
            if i % REFRESH_EVERY == 0:
                refresh_descriptions(library.root)
    refresh_descriptions(library.root)
    report.seconds = time.perf_counter() - start
    return report


def export_descriptions(root: str | Path | None, config: DescribeConfig, dest: Path | None = None) -> dict[str, int]:
    """Write the library's describe caches made with ``config`` as the shipped files, one per task source
    (``<dest>/<origin>.json``, default :data:`~text2lora.data.library.SHIPPED_DIR`); returns tasks per file.

    Each description is checked again against the library as it is now: one that contains a test answer (a task
    can have changed sides since it was described) is left out. Records already shipped with the same settings
    are kept unless a cache replaces them, so an export after a partial run only adds.
    """
    from text2lora.data.library import SHIPPED_DIR, SHIPPED_FORMAT, shipped_descriptions
    from text2lora.paths import read_json

    dest = Path(dest) if dest is not None else SHIPPED_DIR
    library = TaskLibrary.load(root)
    settings = config.cache_key()
    by_origin: dict[str, dict[str, dict]] = {}
    for task in library.tasks:
        path = descriptions_file(library.root, task.name)
        if not path.is_file():
            continue
        cache = read_json(path, "description cache")
        if cache.get("settings") != settings:
            continue
        leaks = leak_strings(library.instances(task.name), library.instances(task.name, "test"))
        clean = [d for d in [*cache.get("descriptions", []), *heldout_of(cache)]
                 if not any(f" {leak} " in f" {_norm(d)} " for leak in leaks)]
        own = task.description
        by_origin.setdefault(task.origin, {})[task.name] = {
            "descriptions": [d for d in cache.get("descriptions", []) if d != own and d in clean],
            "heldout_descriptions": [d for d in heldout_of(cache) if d in clean],
        }
    counts: dict[str, int] = {}
    for origin, tasks in sorted(by_origin.items()):
        target = dest / f"{origin}.json"
        old = read_json(target, "shipped descriptions") if target.is_file() else {}
        kept = old.get("tasks", {}) if old.get("written_by") == settings else {}
        merged = dict(sorted({**kept, **tasks}.items()))
        write_json(target, {"format": SHIPPED_FORMAT, "written_by": settings, "tasks": merged})
        counts[origin] = len(merged)
    shipped_descriptions.cache_clear()
    return counts
