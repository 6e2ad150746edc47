"""Where text2lora keeps its caches, and atomic writes of files and directories."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from text2lora.errors import Text2LoraError


def home() -> Path:
    """The cache root: ``$TEXT2LORA_HOME`` or ``~/.cache/text2lora``."""
    root = os.environ.get("TEXT2LORA_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "text2lora"


def _check_parent_writable(target: Path) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Text2LoraError(f"cannot create directory {parent}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Text2LoraError(f"directory {parent} is not writable")
    return parent


def _create_fresh(parent: Path, prefix: str, create) -> tuple[Path, Any]:
    """``create(path)`` on a new random name in ``parent`` (eight characters like mkdtemp's, retried on a clash);
    returns the path and the result."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            return path, create(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {parent}")


def _new_dir(path: Path) -> None:
    path.mkdir(mode=0o777)  # the umask applies (tempfile.mkdtemp would give 0700)


def _new_file(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)  # not mkstemp's 0600


def _follow_umask(root: Path) -> None:
    """Give everything under ``root`` the modes the umask gives new files and directories.

    ``root`` was made with ``mkdir(0o777)``, so its mode is ``0o777 & ~umask`` (read this way, not with
    ``os.umask``, which would change the process-wide umask for a moment under other threads). Files written into
    it by other libraries may be private (safetensors writes 0600): files get ``0o666 & ~umask`` (plus the
    execute bits for executables), directories ``0o777 & ~umask``.
    """
    dir_mode = stat.S_IMODE(root.stat().st_mode)
    file_mode = dir_mode & 0o666
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(dir_mode)
        else:
            executable = path.stat().st_mode & 0o111
            path.chmod(dir_mode if executable else file_mode)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success rename it to ``target``.

    A crash or kill before the rename leaves ``target`` untouched (old content or absent) and at worst a
    ``.tmp-*`` sibling, never a half-written ``target``. What is renamed follows the umask (0755 directories and
    0644 files under umask 022), whoever wrote the files inside.
    """
    target = _replaceable(Path(target))
    parent = _check_parent_writable(target)
    if target.exists() and not overwrite:
        raise Text2LoraError(f"{target} already exists")
    if target.exists() and not target.is_dir():
        raise Text2LoraError(f"{target} exists and is not a directory")
    try:
        tmp, _ = _create_fresh(parent, f".tmp-{target.name}-", _new_dir)
    except OSError as e:  # a name too long, a read-only or pseudo file system (/proc)
        raise Text2LoraError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        yield tmp
        _follow_umask(tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: The longest file name :func:`atomic_dir` can write: its temporary name adds 14 bytes (``.tmp-`` and
#: ``-XXXXXXXX``) and most file systems allow 255.
MAX_NAME_BYTES = 255 - 14


def check_out_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if every component is short enough to be written atomically; one error otherwise (an
    over-long name would fail deep inside, at the first ``stat``, with ``OSError: File name too long``)."""
    path = Path(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > MAX_NAME_BYTES:
            raise Text2LoraError(f"the name {part[:40]}... is {size} bytes long; the limit is {MAX_NAME_BYTES}")
    return path


def _replaceable(target: Path) -> Path:
    """Refuse targets that cannot be renamed over: ``.``, ``..``, ``/`` or any directory holding the working
    directory (replacing it would delete what the user is working in)."""
    check_out_path(target)
    try:
        resolved, cwd = target.resolve(), Path.cwd().resolve()
    except OSError as e:
        raise Text2LoraError(f"cannot write {target}: {e.strerror or e}") from None
    if target.name in ("", ".", "..") or resolved == cwd or resolved in cwd.parents:
        raise Text2LoraError(f"{target} is the current directory or one above it; name a new directory instead")
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, moving an existing ``target`` aside first; on failure leave ``target`` as it
    was and no ``.old-*`` directory behind."""
    try:
        if not target.exists():
            os.replace(tmp, target)
            return
        old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
        try:
            os.replace(target, old / target.name)
        except OSError:
            shutil.rmtree(old, ignore_errors=True)
            raise
        try:
            os.replace(tmp, target)
        except OSError:
            os.replace(old / target.name, target)
            shutil.rmtree(old, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise Text2LoraError(f"cannot replace {target}: {e.strerror or e}") from None


#: What :func:`atomic_dir` and :func:`atomic_write_bytes` leave behind when killed: ``.tmp-<name>-XXXXXXXX`` (and
#: ``.old-<name>-XXXXXXXX``), the suffix being :func:`tempfile.mkdtemp`'s eight characters.
_TEMPORARY = re.compile(r"^\.(?:tmp|old)-(?P<name>.+)-[a-z0-9_]{8}$")


def remove_stale_temporaries(parent: str | os.PathLike, names: Iterable[str] | None = None,
                             match=None) -> list[Path]:
    """Remove what killed atomic writes left in ``parent``: ``.tmp-``/``.old-`` entries made for one of
    ``names`` (or whose name ``match`` accepts). Nothing else is touched; returns what was removed."""
    parent = Path(parent)
    wanted = set(names or ())
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMPORARY.match(entry.name)
        if not m or not (m["name"] in wanted or (match is not None and match(m["name"]))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; the file's mode follows the umask."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_copy_file(src: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy the file ``src`` to ``path`` as :func:`atomic_write_bytes` writes (streamed: never all in memory)."""
    with open(src, "rb") as source:
        _atomic_write(path, lambda f: shutil.copyfileobj(source, f, 1 << 20))


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    path = check_out_path(path)
    parent = _check_parent_writable(path)
    try:
        tmp, fd = _create_fresh(parent, f".tmp-{path.name}-", _new_file)
    except OSError as e:  # a name too long, a read-only or pseudo file system (/proc)
        raise Text2LoraError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:  # e.g. a directory in the way
            raise Text2LoraError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


_file_hashes: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """A file's sha256 (hex), memoised by (path, size, mtime) within the process."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _file_hashes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        _file_hashes[memo] = h.hexdigest()
    return _file_hashes[memo]


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as :func:`json_text`, atomically."""
    atomic_write_text(path, json_text(obj))


def json_text(obj: Any) -> str:
    """``obj`` as indented, key-sorted JSON with a final newline (so equal objects give equal bytes)."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read JSON with an error that names the file instead of a traceback."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Text2LoraError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Text2LoraError(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None
    return parse_json(text, f"{what} {path}")


def parse_json(text: str | bytes, where: str) -> Any:
    """``json.loads`` for text from outside (files, lines of JSONL): every failure is one error naming ``where``:
    bad syntax, nesting too deep for the parser (RecursionError), an integer of more digits than Python converts."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Text2LoraError(f"{where} is not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise Text2LoraError(f"{where} nests JSON deeper than Python can read") from None
    except (ValueError, UnicodeDecodeError) as e:  # "Exceeds the limit (4300 digits)", bytes not UTF-8
        raise Text2LoraError(f"{where} is not valid JSON ({str(e)[:100]})") from None


def read_safetensors(path: str | os.PathLike, what: str = "weights") -> dict:
    """Load a safetensors file with errors that name it: missing, truncated or not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise Text2LoraError(f"{what} not found: {path}") from None
    except (SafetensorError, OSError) as e:
        raise Text2LoraError(f"cannot read {what} {path} ({e})") from None
