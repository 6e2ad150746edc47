"""The one exception type that means "the user asked for something we cannot do".

The CLI and the server turn it into a one-line message (exit code 2 / HTTP 4xx); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


import re
from collections.abc import Callable


class Text2LoraError(Exception):
    """A user-facing error: bad input, a missing or incompatible file, an unknown name.

    Library code names settings by their config field in braces (``"{lora_library}"``); :meth:`render` writes
    them the way the caller spells them (the CLI: ``--lora-library``), ``str()`` as the field name."""

    def render(self, spell: Callable[[str], str] = lambda field: field) -> str:
        return _SETTING.sub(lambda m: spell(m.group(1)), super().__str__())

    def __str__(self) -> str:
        return self.render()


_SETTING = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def cli_flag(field: str) -> str:
    """How the command line spells a config field: ``lora_library`` -> ``--lora-library``."""
    return "--" + field.replace("_", "-")
