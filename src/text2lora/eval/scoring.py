"""Scoring with one adapter per sample: greedy generation (ROUGE-L, exact match) and multiple choice (option
log-likelihood).

Every unit (a method on a task with one description) becomes a :class:`Request`: its prompts, or for multiple
choice one prompt + option sequence per option. :func:`score_requests` packs the sequences of many units into
batches of ``batch_size``, each sample carrying its own unit's adapter (units of one method run together), and
reports each unit as soon as its last sequence is done, so the caller can cache it.

Multiple choice: every option is scored as the completion after the prompt, followed by the chat template's
end-of-turn token (as in training: "the answer is exactly this option"); the prediction is the option with the
highest mean log-probability per completion token (length-normalised accuracy); ``accuracy_sum`` uses the sum.
The options of one instance share its prompt, so the prompt runs once and its key/value cache is copied to each
option (:func:`shared_prompt_option_logprobs`); a batch holds up to ``batch_size`` prompts with all their options.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from text2lora.data.prompts import IGNORE_INDEX, build_prompt, collate, encode_example
from text2lora.data.task import MULTIPLE_CHOICE
from text2lora.eval.config import EvalSettings
from text2lora.eval.methods import DESCRIPTION, ICL, Unit
from text2lora.eval.metrics import exact_match, is_copy, is_short_answer, rouge_l, strict_match
from text2lora.eval.tasks import EvalTask
from text2lora.lora import LoraWeights, apply_lora


@dataclass
class Request:
    """The sequences of one unit."""

    metric: str  #: "generation" or "multiple_choice"
    prompts: list[str] = field(default_factory=list)  #: generation: chat-templated prompts
    prompt_ids: list[list[int]] = field(default_factory=list)  #: ...and their ids (task text as plain text)
    references: list[list[str]] = field(default_factory=list)  #: generation: acceptable outputs per instance
    inputs: list[str] = field(default_factory=list)  #: generation: the instances' inputs (for the copy rate)
    options: list[list[dict[str, list[int]]]] = field(default_factory=list)  #: MC: encodings per option
    answers: list[int] = field(default_factory=list)  #: MC: the correct option per instance

    def sequences(self) -> list[tuple[int, int | None]]:
        """(instance, option) of every sequence to run."""
        if self.metric == MULTIPLE_CHOICE:
            return [(i, j) for i, opts in enumerate(self.options) for j in range(len(opts))]
        return [(i, None) for i in range(len(self.prompts))]


def build_request(tokenizer, etask: EvalTask, unit: Unit, settings: EvalSettings) -> Request:
    """Prompts for one unit: the description in the prompt for ``desc-prompt``, shots for ``icl3``."""
    description = unit.description if unit.prompt == DESCRIPTION else None
    icl = unit.prompt == ICL
    budget = settings.icl_max_prompt_tokens if icl else settings.max_prompt_tokens
    request = Request(etask.metric)
    for i, inst in enumerate(etask.instances):
        shots = etask.shots(i, settings.icl_shots, settings.seed) if icl else []
        if etask.metric == MULTIPLE_CHOICE:
            request.options.append([
                encode_example(tokenizer, inst, description=description, shots=shots, max_prompt_tokens=budget,
                               max_output_tokens=None, completion=option)
                for option in inst.options
            ])
            request.answers.append(inst.answer)
        else:
            prompt = build_prompt(tokenizer, inst, description=description, shots=shots, max_prompt_tokens=budget)
            request.prompts.append(prompt.text)
            request.prompt_ids.append(prompt.input_ids)
            request.references.append(inst.references or [inst.output])
            request.inputs.append(inst.input)
    return request


def prompt_lengths(request: Request) -> list[int]:
    """Tokens of the prompt each instance of a request sends to the model (multiple choice: the prompt before the
    option), what a user pays per call: ``icl3``'s shots are in it, an adapter's examples are not."""
    from text2lora.data.prompts import IGNORE_INDEX

    if request.metric == MULTIPLE_CHOICE:
        return [sum(1 for x in opts[0]["labels"] if x == IGNORE_INDEX) for opts in request.options]
    return [len(ids) for ids in request.prompt_ids]


def generation_scores(predictions: list[str], references: list[list[str]], inputs: list[str] | None = None,
                      ) -> dict[str, Any]:
    """Every generation metric, each the best over an instance's references, per instance and averaged.

    ``score`` is the headline: strict exact match for short-answer tasks (:func:`is_short_answer`), ROUGE-L for
    long-form ones. ``copy_rate`` (with ``inputs``) is the share of outputs that repeat the input.
    """
    n = len(predictions)
    rouge = [max(rouge_l(p, r) for r in refs) for p, refs in zip(predictions, references)]
    em = [max(exact_match(p, r) for r in refs) for p, refs in zip(predictions, references)]
    strict = [max(strict_match(p, r) for r in refs) for p, refs in zip(predictions, references)]
    short = is_short_answer(references)
    headline = strict if short else rouge
    out = {"metric": "generation", "n": n, "headline": "strict_exact_match" if short else "rouge_l",
           "rouge_l": sum(rouge) / n, "exact_match": sum(em) / n, "strict_exact_match": sum(strict) / n,
           "score": sum(headline) / n, "predictions": predictions, "per_instance_rouge_l": rouge,
           "per_instance_strict_exact_match": strict, "per_instance_score": headline}
    if inputs is not None:
        copies = [is_copy(p, x) for p, x in zip(predictions, inputs, strict=True)]
        out["copy_rate"] = sum(copies) / n
        out["per_instance_copy"] = copies
    return out


def choice_scores(mean_logp: list[list[float]], sum_logp: list[list[float]], answers: list[int]) -> dict[str, Any]:
    """Accuracy by the highest length-normalised log-likelihood (ties: the first option), and by the sum."""
    picks = [max(range(len(s)), key=lambda j: (s[j], -j)) for s in mean_logp]
    picks_sum = [max(range(len(s)), key=lambda j: (s[j], -j)) for s in sum_logp]
    n = len(answers)
    correct = [float(p == a) for p, a in zip(picks, answers)]
    acc = sum(correct) / n
    return {"metric": MULTIPLE_CHOICE, "n": n, "headline": "accuracy", "accuracy": acc,
            "accuracy_sum": sum(p == a for p, a in zip(picks_sum, answers)) / n, "score": acc,
            "choices": picks, "per_instance_correct": correct, "per_instance_score": correct,
            "mean_logprob": [[round(x, 5) for x in s] for s in mean_logp]}


def _prompt_length(encoding: dict[str, list[int]]) -> int:
    return sum(1 for label in encoding["labels"] if label == IGNORE_INDEX)


@torch.inference_mode()
def shared_prompt_option_logprobs(model, pad_id: int, instances: list[list[dict[str, list[int]]]],
                                  lora: LoraWeights | None) -> list[list[tuple[float, float]]]:
    """(mean, sum) log-probability of every option's completion, instance by instance.

    ``instances[k]`` holds the encodings of instance k's options (one prompt, each option as completion) and
    ``lora`` one adapter per instance (or one for all). Each prompt runs once; its cache is repeated for its
    options, which then run as a short right-padded batch. Same numbers as scoring each option in full.
    """
    device = model.device
    prompts = [opts[0]["input_ids"][:_prompt_length(opts[0])] for opts in instances]
    for opts, prompt in zip(instances, prompts):
        if any(o["input_ids"][:len(prompt)] != prompt or _prompt_length(o) != len(prompt) for o in opts):
            raise ValueError("the options of one instance must share their prompt")
    batch = collate([{"input_ids": p} for p in prompts], pad_id, padding_side="left")
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    owner = torch.tensor([k for k, opts in enumerate(instances) for _ in opts], device=device)  # option -> instance
    targets = [o["input_ids"][len(prompts[k]):] for k, opts in enumerate(instances) for o in opts]
    if any(not t for t in targets):
        raise ValueError("an option has no completion tokens")

    def adapter(rows: torch.Tensor | None):
        if lora is None:
            return contextlib.nullcontext()
        return apply_lora(model, lora if lora.n == 1 or rows is None else lora.select(rows))

    with adapter(None):
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float(), -1)  # (K, V): the first completion token
    total = first[owner, torch.tensor([t[0] for t in targets], device=device)]  # (R,)
    rest = max(len(t) for t in targets) - 1
    if rest > 0:  # feed c_1..c_{m-1}, read the log-probabilities of c_2..c_m
        cache = out.past_key_values
        cache.batch_select_indices(owner)
        options = collate([{"input_ids": t[:-1], "labels": t[1:]} for t in targets], pad_id, padding_side="right")
        feed, feed_mask = options["input_ids"].to(device), options["attention_mask"].to(device)
        want = options["labels"].clamp(min=0).to(device)  # padding is masked out below
        start = mask.sum(1)[owner]  # (R,): each option continues its own prompt's positions
        with adapter(owner):
            out = model(input_ids=feed, attention_mask=torch.cat([mask[owner], feed_mask], 1),
                        position_ids=start[:, None] + torch.arange(rest, device=device), past_key_values=cache,
                        use_cache=True)
        logp = torch.log_softmax(out.logits.float(), -1).gather(-1, want[..., None]).squeeze(-1)  # (R, rest)
        total = total + (logp * feed_mask).sum(1)
    lengths = torch.tensor([len(t) for t in targets], device=device, dtype=torch.float)
    pairs = list(zip((total / lengths).tolist(), total.tolist()))
    result, r = [], 0
    for opts in instances:
        result.append(pairs[r:r + len(opts)])
        r += len(opts)
    return result


def _adapter_groups(adapters: list[LoraWeights]) -> list[list[int]]:
    """Indices of adapters that can share a batch (same modules, rank and scale)."""
    groups: dict[tuple, list[int]] = {}
    for i, w in enumerate(adapters):
        sig = (w.rank, w.scale, w.layout.n_layers, tuple(sorted(w.layout.shapes.items())))
        groups.setdefault(sig, []).append(i)
    return list(groups.values())


def score_requests(
    model,
    tokenizer,
    requests: list[Request],
    adapters: list[LoraWeights] | None,
    *,
    batch_size: int,
    max_new_tokens: int,
    on_done: Callable[[int, dict[str, Any], float], None],
    progress: bool = True,
    desc: str = "eval",
) -> None:
    """Run every request; ``on_done(index, scores, seconds)`` fires as each request completes."""
    from tqdm.auto import tqdm

    from text2lora.generation import generate_texts

    groups = _adapter_groups(adapters) if adapters is not None else [list(range(len(requests)))]
    total = sum(len(r.sequences()) for r in requests)
    bar = tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True, leave=False)
    outputs: dict[int, dict[tuple[int, int | None], Any]] = {i: {} for i in range(len(requests))}
    seconds = dict.fromkeys(range(len(requests)), 0.0)
    for group in groups:
        stacked = LoraWeights.cat([adapters[i] for i in group]) if adapters is not None else None
        by_metric: dict[str, list] = {}
        for slot, r in enumerate(group):  # a batch holds one metric: generation or option scoring
            by_metric.setdefault(requests[r].metric, []).extend((slot, r, seq) for seq in requests[r].sequences())
        for chunk in (c for metric, items in by_metric.items() for c in _chunks(metric, items, batch_size)):
            t0 = time.perf_counter()
            if requests[chunk[0][1]].metric == MULTIPLE_CHOICE:
                _run_choice(model, tokenizer, requests, chunk, stacked, outputs)
            else:
                lora = None if stacked is None else stacked.select(torch.tensor([slot for slot, _, _ in chunk]))
                prompts = [requests[r].prompt_ids[i] if requests[r].prompt_ids else requests[r].prompts[i]
                           for _, r, (i, _) in chunk]
                texts = generate_texts(model, tokenizer, prompts, lora=lora, max_new_tokens=max_new_tokens,
                                       batch_size=len(chunk))
                for (_, r, seq), text in zip(chunk, texts):
                    outputs[r][seq] = text
            elapsed = time.perf_counter() - t0
            bar.update(len(chunk))
            for _, r, _ in chunk:
                seconds[r] += elapsed / len(chunk)
            for r in dict.fromkeys(r for _, r, _ in chunk):
                if len(outputs[r]) == len(requests[r].sequences()):
                    on_done(r, _finish(requests[r], outputs.pop(r)), seconds[r])
    bar.close()


def _chunks(metric: str, items: list, batch_size: int):
    """Batches of ``batch_size`` sequences; for multiple choice, ``batch_size`` instances with all their options."""
    if metric != MULTIPLE_CHOICE:
        yield from (items[start:start + batch_size] for start in range(0, len(items), batch_size))
        return
    chunk: list = []
    prompts: set = set()
    for item in items:
        key = (item[1], item[2][0])  # (request, instance)
        if key not in prompts and len(prompts) == batch_size:
            yield chunk
            chunk, prompts = [], set()
        prompts.add(key)
        chunk.append(item)
    if chunk:
        yield chunk


def _run_choice(model, tokenizer, requests, chunk, stacked: LoraWeights | None, outputs) -> None:
    """One batch of multiple-choice items (options of whole instances, in order); ``stacked`` holds one adapter
    per slot of the adapter group."""
    keys = list(dict.fromkeys((slot, r, i) for slot, r, (i, _) in chunk))  # (slot, request, instance)
    instances = [requests[r].options[i] for _, r, i in keys]
    lora = None if stacked is None else stacked.select(torch.tensor([slot for slot, _, _ in keys]))
    scores = shared_prompt_option_logprobs(model, tokenizer.pad_token_id, instances, lora)
    for (_, r, i), pairs in zip(keys, scores):
        for j, pair in enumerate(pairs):
            outputs[r][(i, j)] = pair


def _finish(request: Request, out: dict[tuple[int, int | None], Any]) -> dict[str, Any]:
    if request.metric == MULTIPLE_CHOICE:
        mean = [[out[(i, j)][0] for j in range(len(opts))] for i, opts in enumerate(request.options)]
        total = [[out[(i, j)][1] for j in range(len(opts))] for i, opts in enumerate(request.options)]
        return choice_scores(mean, total, request.answers)
    return generation_scores([out[(i, None)] for i in range(len(request.prompts))], request.references,
                             request.inputs or None)


def rescore(scores: dict[str, Any], etask: EvalTask) -> dict[str, Any]:
    """A unit's scores recomputed from its stored predictions with today's metrics (cached units scored before a
    metric existed get it without running the model again); multiple-choice scores gain their headline fields."""
    if scores.get("metric") == MULTIPLE_CHOICE:
        return {"headline": "accuracy", **scores, "per_instance_score": scores.get("per_instance_correct")}
    predictions = scores.get("predictions")
    if not predictions or len(predictions) != len(etask.instances):
        return scores
    return generation_scores(predictions, [i.references or [i.output] for i in etask.instances],
                             [i.input for i in etask.instances])
