"""The user-error contract: one exception family for "the user asked for something we cannot do".

:class:`Text2LoraError` and its subclasses are the only errors the CLI and the server show as a one-line message
(CLI: exit code 2; HTTP: the status its class carries, in OpenAI's error shape). Anything else is a bug and keeps
its traceback (HTTP 500). The meaning is in the class, never in the message text:

========================  ======  ==========================================================
class                     HTTP    meaning
========================  ======  ==========================================================
``Text2LoraError``        400     bad input: a value, file or request that cannot be used
``NotFound``              404     a named thing (adapter, task, checkpoint) does not exist
``Busy``                  429     try again later: a queue or a concurrency limit is full
``Unavailable``           503     the service cannot do it now (shutting down, still loading)
========================  ======  ==========================================================
"""

from __future__ import annotations


import re
from collections.abc import Callable


class Text2LoraError(Exception):
    """A user-facing error: bad input, a missing or incompatible file, an unknown name.

    ``status`` is the HTTP status the server answers with; ``code`` the OpenAI-style error code.

    Library code names settings by their config field in braces (``"{lora_library}"``); :meth:`render` writes
    them the way the caller spells them (the CLI: ``--lora-library``), ``str()`` as the field name."""

    status: int = 400
    code: str = "invalid_request"

    def render(self, spell: Callable[[str], str] = lambda field: field) -> str:
        return _SETTING.sub(lambda m: spell(m.group(1)), super().__str__())

    def __str__(self) -> str:
        return self.render()


class NotFound(Text2LoraError):
    """A named thing does not exist (HTTP 404)."""

    status = 404
    code = "not_found"


class Busy(Text2LoraError):
    """A queue or concurrency limit is full; the same request may succeed later (HTTP 429)."""

    status = 429
    code = "busy"


class Unavailable(Text2LoraError):
    """The service cannot serve this now: shutting down, or a component is not loaded (HTTP 503)."""

    status = 503
    code = "unavailable"


_SETTING = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def cli_flag(field: str) -> str:
    """How the command line spells a config field: ``lora_library`` -> ``--lora-library``."""
    return "--" + field.replace("_", "-")
