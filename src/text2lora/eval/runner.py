"""Run an evaluation: tasks x methods x descriptions, each unit from the cache or scored in batches.

    from text2lora.eval import EvalConfig, evaluate, write_report
    result = evaluate(EvalConfig(methods=["base", "t2l-sft"], t2l_sft="runs/sft/best", tasks="unseen"))
    write_report(result, "reports/unseen")
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from text2lora.data.task import GENERATION
from text2lora.errors import Text2LoraError
from text2lora.eval.cache import ScoreCache, cache_key, default_cache_dir, stat_files
from text2lora.eval.config import EvalConfig
from text2lora.eval.methods import DESCRIPTION, ICL, DescriptionGroups, Method, Unit, build_method, method_path
from text2lora.eval.scoring import build_request, prompt_lengths, rescore, score_requests
from text2lora.eval.tasks import EvalTask, load_task_file, select_library_tasks


@dataclass
class EvalResult:
    """Everything a report needs: one record per unit, what was skipped and why, config and timing."""

    config: dict[str, Any]
    records: list[dict[str, Any]]
    tasks: list[dict[str, Any]]  #: name, split, metric, scored instances
    columns: list[str]  #: result labels in display order (``base``, ``t2l-sft[train]`` ...)
    skipped: list[dict[str, str]] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    methods: list[dict[str, Any]] = field(default_factory=list)
    #: per column: mean prompt tokens per request (``mean``) over ``requests`` scored instances
    prompt_tokens: dict[str, dict[str, float]] = field(default_factory=dict)


def load_tasks(config: EvalConfig) -> tuple[list[EvalTask], list]:
    """The tasks to score, and every library task (the pool of the ``other`` description group)."""
    from text2lora.data.library import TaskLibrary

    settings = config.settings
    if config.task_file is not None:
        etask = load_task_file(config.task_file, config.description, settings.max_instances)
        pool = TaskLibrary.load(config.library).tasks if config.library else []
        return [etask], [*pool, etask.task]
    library = TaskLibrary.load(config.library)
    return select_library_tasks(library, config.tasks, config.max_tasks, settings.max_instances), library.tasks


def evaluate(config: EvalConfig, *, model=None, tokenizer=None, echo: Callable[[str], None] = print) -> EvalResult:
    """Score every method on every task; units already in the cache are not recomputed."""
    from text2lora.models.base import default_device, load_base_model
    from text2lora.models.bundled import resolve_model

    t_start = time.perf_counter()
    settings = config.settings
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    etasks, all_tasks = load_tasks(config)
    for name in config.methods:
        method_path(name, config)  # missing files fail before the model loads
    if model is None:
        model, tokenizer = load_base_model(settings.base_model, device=default_device())
    t_model = time.perf_counter()
    methods = [build_method(name, config, model) for name in config.methods]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise Text2LoraError(f"a method is listed twice: {', '.join(names)}")
    cache = ScoreCache((config.cache_dir or default_cache_dir()) if config.use_cache else None)
    groups = DescriptionGroups(all_tasks, settings.descriptions_per_group, settings.seed)
    base_fp = {"name": settings.base_model, "files": stat_files(resolve_model(settings.base_model))}
    # Instances, descriptions and ICL shots enter the key as data, so of the settings only the decoding
    # length and the prompt budget remain: a changed setting recomputes only the units it affects.
    common = {"base_model": base_fp}
    by_name = {t.name: t for t in etasks}
    task_fp = {t.name: t.fingerprint() for t in etasks}
    echo(f"evaluating {len(methods)} methods on {len(etasks)} tasks "
         f"({sum(t.split == 'seen' for t in etasks)} seen, {sum(t.split == 'unseen' for t in etasks)} unseen"
         f"{', 1 user' if config.task_file else ''}), up to {settings.max_instances} instances each")

    records: list[dict[str, Any]] = []
    columns: list[str] = []
    timing: dict[str, Any] = {"model_load_s": round(t_model - t_start, 2), "methods": {}}
    for method in methods:
        t0 = time.perf_counter()
        found, fresh, keyed = _run_method(method, etasks, by_name, groups, common, task_fp, model, tokenizer,
                                          config, cache, echo)
        for u, key in keyed:
            if u.label not in columns:
                columns.append(u.label)
            rec = found[key] or fresh[key]
            records.append(_record(u, by_name[u.task], rec, cached=found[key] is not None))
        for task, reason in method.skipped.items():
            echo(f"  {method.name}: skipped {task}: {reason}")
        elapsed = time.perf_counter() - t0
        scored = sum(1 for _, key in keyed if found[key] is None)
        timing["methods"][method.name] = {"seconds": round(elapsed, 2), "units": len(keyed), "scored": scored}
        echo(f"{method.name}: done in {elapsed:.1f} s")
    timing["total_s"] = round(time.perf_counter() - t_start, 2)
    timing["cache"] = {"hits": cache.hits, "misses": cache.misses}
    skipped = [{"method": m.name, "task": t, "reason": r} for m in methods for t, r in m.skipped.items()]
    tasks = [{"name": t.name, "split": t.split, "metric": t.metric, "n": len(t.instances), "headline": t.headline}
             for t in etasks]
    return EvalResult(config=config.to_dict(), records=records, tasks=tasks, columns=columns, skipped=skipped,
                      timing=timing, environment=_environment(), methods=[m.describe() for m in methods],
                      prompt_tokens=_prompt_tokens(records, by_name, tokenizer, settings))


def _prompt_tokens(records: list[dict[str, Any]], by_name: dict[str, EvalTask], tokenizer, settings
                   ) -> dict[str, dict[str, float]]:
    """Mean prompt tokens per request of each column, counted from the prompts themselves (tokenising only, so
    cached records count too). A prompt depends on the task, the prompt kind and (``desc-prompt``) the
    description, so each is built once."""
    seen: dict[tuple, list[int]] = {}
    totals: dict[str, list[int]] = {}
    for rec in records:
        key = (rec["task"], rec["prompt"], rec["description"] if rec["prompt"] == DESCRIPTION else None)
        if key not in seen:
            unit = Unit(method=rec["method"], group=rec["group"], task=rec["task"], description=rec["description"],
                        prompt=rec["prompt"])
            seen[key] = prompt_lengths(build_request(tokenizer, by_name[rec["task"]], unit, settings))
        totals.setdefault(rec["label"], []).extend(seen[key])
    return {label: {"mean": round(sum(v) / len(v), 1), "requests": len(v)} for label, v in totals.items() if v}


def _run_method(method: Method, etasks: list[EvalTask], by_name: dict[str, EvalTask], groups: DescriptionGroups,
                common: dict[str, Any], task_fp: dict[str, str], model, tokenizer, config: EvalConfig,
                cache: ScoreCache, echo: Callable[[str], None]):
    """One method's units, each from the cache or scored: (cached records by key, fresh ones, (unit, key) pairs)."""
    settings = config.settings
    units = [u for t in etasks for u in method.units(t, groups, config.groups_for(method.name))]
    keyed = []
    for u in units:
        fields = {**common, "method": method.fingerprint(u), "task": u.task, "task_data": task_fp[u.task],
                  "group": u.group, "description": u.description, "prompt": u.prompt}
        fields.update(_setting_fields(u, by_name[u.task], settings))
        keyed.append((u, cache_key(fields)))
    found = {key: cache.get(key) for _, key in keyed}
    pending = [(u, key) for u, key in keyed if found[key] is None]
    echo(f"{method.name}: {len(units)} units, {len(units) - len(pending)} cached, {len(pending)} to score")
    fresh = _score(method, pending, by_name, model, tokenizer, config, cache) if pending else {}
    return found, fresh, keyed


def _setting_fields(unit: Unit, etask: EvalTask, settings) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if etask.metric == GENERATION:
        fields["max_new_tokens"] = settings.max_new_tokens
    if unit.prompt == ICL:
        fields["max_prompt_tokens"] = settings.icl_max_prompt_tokens
        fields["shots"] = etask.shots_fingerprint(settings.icl_shots, settings.seed)
    else:
        fields["max_prompt_tokens"] = settings.max_prompt_tokens
    return fields


def _score(method: Method, pending: list[tuple[Unit, str]], by_name: dict[str, EvalTask], model, tokenizer,
           config: EvalConfig, cache: ScoreCache) -> dict[str, dict[str, Any]]:
    settings = config.settings
    requests = [build_request(tokenizer, by_name[u.task], u, settings) for u, _ in pending]
    adapters = method.adapters([u for u, _ in pending]) if method.uses_adapters else None
    fresh: dict[str, dict[str, Any]] = {}

    def done(index: int, scores: dict[str, Any], seconds: float) -> None:
        unit, key = pending[index]
        record = {"scores": scores, "seconds": round(seconds, 3), "unit": unit.__dict__}
        cache.put(key, record)
        fresh[key] = record

    score_requests(model, tokenizer, requests, adapters, batch_size=config.batch_size,
                   max_new_tokens=settings.max_new_tokens, on_done=done, progress=config.progress, desc=method.name)
    return fresh


def _record(unit: Unit, etask: EvalTask, rec: dict[str, Any], *, cached: bool) -> dict[str, Any]:
    return {"label": unit.label, "method": unit.method, "group": unit.group, "task": unit.task, "split": etask.split,
            "metric": etask.metric, "description": unit.description, "prompt": unit.prompt, "cached": cached,
            "seconds": rec.get("seconds"), "scores": rescore(rec["scores"], etask)}


def _environment() -> dict[str, Any]:
    import torch
    import transformers

    from text2lora import __version__

    return {"text2lora": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}
