"""`text2lora export gguf`: an existing PEFT LoRA adapter in another program's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Convert a PEFT LoRA adapter for other programs (llama.cpp, Ollama).", no_args_is_help=True)


@app.command("gguf")
def gguf(
    adapter_dir: Annotated[Path, typer.Argument(help="A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The .gguf file to write (default: ADAPTER_DIR.gguf beside the directory).")] = None,
    base_model: Annotated[Optional[str], typer.Option(help="The base model's hub id or folder, for its config (default: the adapter's base_model_name_or_path).")] = None,
    outtype: Annotated[str, typer.Option(help="Tensor type: f32 or f16.")] = "f32",
) -> None:
    """Write a llama.cpp / Ollama LoRA (GGUF) from a PEFT LoRA directory, rsLoRA scale folded into its alpha.

    Example: text2lora export gguf sentiment --out sentiment.gguf, then llama-cli -m base.gguf --lora sentiment.gguf
    """
    from text2lora.export.gguf import convert_peft_adapter

    target = out if out is not None else adapter_dir.resolve().with_name(adapter_dir.resolve().name + ".gguf")
    print(convert_peft_adapter(adapter_dir, target, base_model=base_model, outtype=outtype))
