"""The one exception type that means "the user asked for something we cannot do".

The CLI and the server turn it into a one-line message (exit code 2 / HTTP 4xx); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class Text2LoraError(Exception):
    """A user-facing error: bad input, a missing or incompatible file, an unknown name."""
