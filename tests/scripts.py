"""Import a repository script (benchmarks/*.py, scripts/*.py) as a module, for tests of its functions and main()."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """The script at ``REPO / relative``, executed once per call under the name ``script_<stem>``; its folder is on
    ``sys.path`` (benchmarks import their siblings) and the module is registered (dataclasses look it up)."""
    path = REPO / relative
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
