"""The task library: loaders, budget fitting, splits, descriptions, prompt formatting and samplers.

One concern per module:

* :mod:`~text2lora.data.task`: ``Instance`` and ``Task`` records (JSON round-trip).
* :mod:`~text2lora.data.loaders`: Natural Instructions v1, BIG-bench JSON, Super-NaturalInstructions v2 and user
  JSONL -> ``TaskData``; ``load_path(path, format="auto", description=None) -> LoadResult(tasks, problems)``.
* :mod:`~text2lora.data.bigbench`: fetch the pinned ``bigbench==1.0.0`` sdist with pip and extract its task JSON.
* :mod:`~text2lora.data.fit`: ``Budget`` and ``fit_task`` (token limits of the base model's tokenizer).
* :mod:`~text2lora.data.splits`: seen/unseen tasks by source family; train/validation/test instances.
* :mod:`~text2lora.data.library`: the on-disk layout and ``TaskLibrary.load(dir)``.
* :mod:`~text2lora.data.prepare`: ``prepare_library(PrepareConfig)``, the ``data prepare`` pipeline.
* :mod:`~text2lora.data.describe`: ``describe_library(dir, DescribeConfig)``, descriptions by a local model.
* :mod:`~text2lora.data.prompts`: chat-template prompts, ``encode_example`` with completion-only labels, ``collate``.
* :mod:`~text2lora.data.samplers`: ``HierarchicalSampler``, ``encode_refs``.
* :mod:`~text2lora.data.testing`: a tiny character-level chat tokenizer for tests.

Typical use by training code::

    lib = TaskLibrary.load()                       # $TEXT2LORA_HOME/library
    train = {t.name: lib.instances(t.name, "train") for t in lib.seen()}
    sampler = HierarchicalSampler({k: len(v) for k, v in train.items()},
                                  {t.name: t.descriptions for t in lib.seen()}, tasks_per_batch=8, seed=0)
    for step in range(steps):
        refs = sampler.batch(step)
        batch = collate(encode_refs(refs, train, tokenizer), tokenizer.pad_token_id)   # + batch["description"]

Only the record types are imported here, so ``import text2lora.data`` stays light (no torch, no transformers).
"""

from text2lora.data.task import GENERATION, MULTIPLE_CHOICE, Instance, Task, TaskData

__all__ = ["GENERATION", "MULTIPLE_CHOICE", "Instance", "Task", "TaskData"]
