"""The ``text2lora`` command: one entry point, subcommands grouped by concern.

Each subcommand module is thin: it parses, calls one library function, prints. User mistakes become one line
on stderr and exit code 2 (see :func:`main`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys

import click
import typer
from typer._click import ClickException as _TyperClickException  # typer 0.29 vendors its own click

from text2lora.errors import Text2LoraError, cli_flag

app = typer.Typer(
    name="text2lora",
    help="Turn a plain-English task description into a LoRA adapter (Text-to-LoRA).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


#: Every command: name -> "module:function" (a function is a command, a typer.Typer a group of them).
COMMANDS = {
    "init": "text2lora.cli.core:init",
    "generate": "text2lora.cli.core:generate",
    "export": "text2lora.cli.export:app",
    "size": "text2lora.cli.core:size",
    "demo": "text2lora.cli.demo:demo",
    "data": "text2lora.cli.data:app",
    "train": "text2lora.cli.train:app",
    "eval": "text2lora.cli.eval:eval_",
    "serve": "text2lora.cli.serve:serve",
}
_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    import importlib

    for name, target in COMMANDS.items():
        module, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name=name)(obj)
    _registered = True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 2 user error)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    _register()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="text2lora", standalone_mode=False)
    except Text2LoraError as e:
        print(f"text2lora: error: {e.render(cli_flag)}", file=sys.stderr)
        return 2
    except (click.exceptions.Abort, typer.Abort):
        print("text2lora: aborted", file=sys.stderr)
        return 130
    except (click.ClickException, _TyperClickException) as e:
        print(f"text2lora: error: {e.format_message()}", file=sys.stderr)
        return 2
    except (click.exceptions.Exit, typer.Exit) as e:
        return e.exit_code
    return result if isinstance(result, int) else 0


def entry() -> None:  # console-script target
    sys.exit(main())
