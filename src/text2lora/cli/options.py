"""The options every command with a typed config shares: ``--config FILE`` (YAML) and ``--set KEY=VALUE``.

:func:`settings_from` builds the config: its dataclass defaults, then the YAML file, then ``--set`` overrides,
then the options given explicitly on the command line (an option left at its default does not override the file).
The defaults the command shows in ``--help`` are the dataclass's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from text2lora.errors import Text2LoraError

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (see configs/); defaults otherwise.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key, e.g. --set loop.steps=500 (repeatable).")]


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["a.b=3", "c=x"]`` -> ``{"a.b": 3, "c": "x"}`` (values read as YAML scalars)."""
    from text2lora.config import load_yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise Text2LoraError(f"--set needs KEY=VALUE, got {item!r}")
        out[key.strip()] = load_yaml(value, f"--set {key.strip()}")
    return out


def config_data(config: Path | None, sets: list[str] | None) -> dict[str, Any]:
    """The mapping of ``--config`` (or ``{}``) with the ``--set`` overrides applied."""
    from text2lora.config import apply_overrides, read_yaml_mapping

    data = read_yaml_mapping(config) if config is not None else {}
    return apply_overrides(data, parse_sets(sets))


def settings_from(ctx: typer.Context, cls, config: Path | None, sets: list[str] | None, **values: Any):
    """``cls`` from its defaults < ``config`` < ``sets`` < the command-line options in ``values`` that were given.

    ``values`` maps a field of ``cls`` to the command's option value; options are matched to the command's
    parameters by the same name, or by ``option_names[field]`` when the command spells it otherwise."""
    return build(ctx, cls, config_data(config, sets), **values)


def build(ctx: typer.Context, cls, data: dict[str, Any], **values: Any):
    """``cls`` from ``data`` and the command-line options in ``values`` (see :func:`settings_from`)."""
    from text2lora.config import from_dict

    names = values.pop("option_names", {}) or {}
    data = dict(data)
    for field, value in values.items():
        source = ctx.get_parameter_source(names.get(field, field))  # None: not an option of the command
        given = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
        if given or field not in data:
            data[field] = value
    return from_dict(cls, data, cls.__name__)
