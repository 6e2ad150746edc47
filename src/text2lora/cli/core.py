"""`text2lora init | generate | size | demo`: the core commands."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from text2lora.config import LoraConfig
from text2lora.errors import Text2LoraError
from text2lora.models.bundled import BUNDLED_BASE, BUNDLED_ENCODER
from text2lora.models.targets import DEFAULT_TARGETS

_LORA = LoraConfig()

VARIANT_HELP = "Hypernetwork size: L (A and B from one head), M (one head shared by A and B), S (one rank row at a time)."


def _targets(value: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in value.split(",") if t.strip())
    if not names:
        raise Text2LoraError("--targets needs at least one module name, e.g. q_proj,v_proj")
    return names


def _variant(value: str) -> str:
    v = value.strip().upper()
    if v not in ("L", "M", "S"):
        raise Text2LoraError(f"unknown variant {value!r}; choose L, M or S")
    return v


def init(
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory to write.")],
    base_model: Annotated[str, typer.Option(help=f"Base model: '{BUNDLED_BASE}', a hub id or a local folder.")] = BUNDLED_BASE,
    variant: Annotated[str, typer.Option(help=VARIANT_HELP)] = "L",
    targets: Annotated[str, typer.Option(help="Comma-separated Linear modules to adapt in every decoder layer.")] = ",".join(DEFAULT_TARGETS),
    encoder: Annotated[str, typer.Option(help="sentence-transformers encoder for descriptions (bundled name, hub id or folder).")] = BUNDLED_ENCODER,
    rank: Annotated[int, typer.Option(help="LoRA rank r.")] = _LORA.rank,
    alpha: Annotated[float, typer.Option(help="LoRA alpha (scaled by alpha/sqrt(r): rsLoRA).")] = _LORA.alpha,
    seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
) -> None:
    """Write a freshly initialised hypernetwork for a base model (its adapters leave the model unchanged until trained)."""
    from text2lora.api import init_checkpoint
    from text2lora.config import HyperNetConfig, LoraConfig
    from text2lora.encoders import EncoderSpec

    config = HyperNetConfig(variant=_variant(variant), lora=LoraConfig(rank=rank, alpha=alpha))
    path = init_checkpoint(out, base_model=base_model, variant=config.variant, targets=_targets(targets),
                           encoder=EncoderSpec(name=encoder), hypernet=config, seed=seed)
    print(f"wrote a fresh {config.variant} hypernetwork for {base_model} to {path}")


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n].strip("-") or "adapter"


MAX_FILE_DESCRIPTIONS = 10_000
"""Descriptions one --descriptions-file may hold (each becomes an adapter directory of a few MB)."""
MAX_FILE_BYTES = 16 * 2**20


def _read_descriptions(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded: /dev/zero or a huge file is refused, not read whole
        if len(data) > MAX_FILE_BYTES:
            raise Text2LoraError(f"descriptions file {path} is over {MAX_FILE_BYTES // 2**20} MiB")
        lines = data.decode("utf-8").splitlines()
    except FileNotFoundError:
        raise Text2LoraError(f"descriptions file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Text2LoraError(f"cannot read descriptions file {path}: {e}") from None
    descriptions = [line.strip() for line in lines if line.strip()]
    if not descriptions:
        raise Text2LoraError(f"descriptions file {path} has no descriptions (one per line)")
    if len(descriptions) > MAX_FILE_DESCRIPTIONS:
        raise Text2LoraError(f"descriptions file {path} has {len(descriptions)} descriptions; the limit is "
                             f"{MAX_FILE_DESCRIPTIONS} (split it)")
    return descriptions


def generate(
    description: Annotated[Optional[str], typer.Argument(help="The task, in plain English.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapter directory (with --descriptions-file: a parent directory, one adapter per line).")] = Path("adapter"),
    checkpoint: Annotated[Optional[Path], typer.Option(help="Hypernetwork checkpoint directory (default: the shipped one).")] = None,
    descriptions_file: Annotated[Optional[Path], typer.Option(help="A text file with one description per line.")] = None,
    base_model: Annotated[Optional[str], typer.Option(help="Check that the adapter fits this base model (default: the checkpoint's).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="peft (an adapter directory) or gguf (a llama.cpp / Ollama LoRA file, --out plus .gguf).")] = "peft",
    outtype: Annotated[str, typer.Option(help="GGUF tensor type: f32 or f16.")] = "f32",
    examples: Annotated[Optional[Path], typer.Option(help="Worked examples for the adapter to learn from, as a task file (JSON Lines, {\"input\": ..., \"output\": ...} per line); they stay out of the prompt. Needs a checkpoint trained with examples.")] = None,
) -> None:
    """Generate LoRA adapters (PEFT directories, or llama.cpp GGUF files) from task descriptions, in one hypernetwork forward pass.

    Example: text2lora generate "Classify the sentiment of a movie review as positive or negative." --out sentiment

    With examples: text2lora generate "Classify the sentiment." --examples shots.jsonl --out sentiment
    """
    from text2lora.api import T2L

    if (description is None) == (descriptions_file is None):
        raise Text2LoraError("give either a DESCRIPTION argument or --descriptions-file")
    from text2lora.encoders import check_descriptions

    descriptions = [description] if description is not None else _read_descriptions(descriptions_file)
    check_descriptions(descriptions)  # before any model loads
    shots = None
    if examples is not None:
        from text2lora.examples import read_examples_file

        shots = read_examples_file(examples)
    if fmt not in ("peft", "gguf"):
        raise Text2LoraError(f"unknown --format {fmt!r}; choose peft or gguf")
    if fmt == "peft" and outtype != "f32":
        raise Text2LoraError("--outtype is for --format gguf (PEFT adapters are float32)")
    t2l = T2L.load(checkpoint)
    if shots:
        t2l.require_examples(len(shots))
    if base_model is not None:
        t2l.check_base_model(base_model)
    if description is not None:
        outs = [out]
    else:
        outs = [out / f"{i:03d}-{_slug(d)}" for i, d in enumerate(descriptions)]
    if fmt == "gguf":
        from text2lora.export.gguf import save_gguf_adapters

        outs = [o if o.suffix == ".gguf" else Path(f"{o}.gguf") for o in outs]
        paths = save_gguf_adapters(t2l, descriptions, outs, outtype=outtype, examples=shots)
    else:
        paths = t2l.save_adapters(descriptions, outs, examples=shots)
    if descriptions_file is not None:
        from text2lora.paths import write_json

        write_json(out / "index.json", [{"description": d, "adapter": p.name} for d, p in zip(descriptions, paths)])
    for p in paths:
        print(p)
    if not t2l.meta.trained:
        print("note: this checkpoint is untrained (fresh init); its adapters do not change the model yet", file=sys.stderr)


def size(
    model_config: Annotated[str, typer.Option(help="A model config.json file, a model folder or a hub id (no weights are read).")],
    variant: Annotated[str, typer.Option(help=VARIANT_HELP)] = "L",
    targets: Annotated[str, typer.Option(help="Comma-separated target modules.")] = "q_proj,v_proj",
    rank: Annotated[int, typer.Option(help="LoRA rank r.")] = 8,
    latent: Annotated[int, typer.Option(help="Trunk width.")] = 128,
    head_in: Annotated[int, typer.Option(help="Output head input width.")] = 512,
    encoder_dim: Annotated[int, typer.Option(help="Task-embedding size (384 all-MiniLM-L6-v2, 1024 gte-large-en-v1.5).")] = 384,
    as_json: Annotated[bool, typer.Option("--json", help="Print {variant, params, bytes_fp32} as JSON.")] = False,
) -> None:
    """Print the hypernetwork's parameter count and fp32 size for any model config, without loading weights."""
    import torch

    from text2lora.checks import int_in
    from text2lora.config import HyperNetConfig, LoraConfig
    from text2lora.hypernet import build_hypernetwork, count_parameters
    from text2lora.models.targets import discover_targets

    config = HyperNetConfig(variant=_variant(variant), latent=latent, head_in=head_in, lora=LoraConfig(rank=rank))
    int_in(encoder_dim, "--encoder-dim")
    layout = discover_targets(model_config, _targets(targets))
    with torch.device("meta"):
        net = build_hypernetwork(config, encoder_dim=encoder_dim, n_layers=layout.n_layers, shapes=layout.shapes, seed=None)
    params = count_parameters(net)
    if as_json:
        print(json.dumps({"variant": config.variant, "params": params, "bytes_fp32": params * 4}))
        return
    print(f"variant {config.variant}: {params:,} parameters ({params / 1e6:.1f}M), {params * 4 / 2**20:.1f} MiB in fp32")
    print(f"targets: {layout.model_type}, {layout.summary()}, rank {rank}")
