"""Artifact writers and readers. Every writer is atomic (temp file, then rename), so an
interrupted job never leaves a half-written artifact that a rerun would mistake for done."""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "WriteError",
    "atomic_dir",
    "atomic_path",
    "read_json",
    "read_table",
    "remove_stale_temporaries",
    "write_bytes",
    "write_csv",
    "write_errors",
    "write_json",
    "write_text",
    "write_with",
]


class WriteError(OSError):
    """An output that could not be written, in one line: the path and the cause (a full disk, no permission)."""


#: What torch's zip writer says when the file system refuses a write (a full disk): no path, no cause.
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "inline_container", "unexpected pos", "file write failed")


def _cause(err: BaseException, folder: Path) -> str:
    code = getattr(err, "errno", None)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    room = f" ({free / 1e6:.0f} MB free)" if free is not None else ""
    if code in (errno.ENOSPC, errno.EDQUOT) or (code is None and free is not None and free < 64e6):
        return f"no space left on the device{room}; free some space, then run the same command again"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied; make {folder} writable (or run from a folder you own), then run again"
    if code == errno.EROFS:
        return "read-only file system; run the workflow from a writable folder"
    return os.strerror(code) if code else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


@contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turns a failed write of ``path`` (an OSError, or torch's bare "unexpected pos" of a full disk) into a
    :class:`WriteError` naming the path and the cause."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise WriteError(f"cannot write {path}: {_cause(err, _existing(Path(path).parent))}") from err
    except RuntimeError as err:
        if not any(text in str(err) for text in _TORCH_WRITE_FAILURES):
            raise
        raise WriteError(f"cannot write {path}: {_cause(err, _existing(Path(path).parent))}") from err


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Removes the temporary files an earlier, killed write of ``path`` left beside it (``.<name>.*``).

    A SIGKILL (or a power cut) gives the writer no chance to clean up; the next write of the same file, in the step
    that owns it, removes them. Returns the removed paths.
    """
    target = Path(path)
    if not target.parent.is_dir():
        return []
    stale = [p for p in target.parent.glob(f".{glob.escape(target.name)}.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, *, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success renames it onto ``path``.

    This is the package's one atomic writer: every artifact goes through it (directly, or through
    :func:`write_with` and the ``write_*`` helpers). The temporary file keeps the target's suffix
    (some writers choose the format from it) and gets the permissions ``open()`` would give. With
    ``fsync`` its contents are flushed to disk before the rename (a resumable training state that
    must survive a power cut, not only a killed process). On error it is removed and ``path`` is
    left untouched; a full disk or a folder without write permission is a :class:`WriteError` naming
    ``path``. Temporary files of an earlier, killed write of ``path`` are removed first.
    """
    target = Path(path)
    with write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix or target.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        with write_errors(target):
            yield Path(tmp)
            if fsync:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give what open() would
            os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a new empty directory beside ``path``; on success it replaces ``path``.

    For artifacts that are directories (a Hugging Face model saved with ``save_pretrained``).
    On error the temporary directory is removed and ``path`` is left untouched.
    """
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
            os.replace(target, old / "replaced")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_with(path: str | os.PathLike, writer: Callable[[Path], object], *, fsync: bool = False) -> Path:
    """Writes ``path`` atomically with ``writer``, a callback that receives the temporary path and
    writes it (``lambda tmp: torch.save(state, tmp)``, ``lambda tmp: fig.savefig(tmp)``)."""
    with atomic_path(path, fsync=fsync) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Writes ``text`` (UTF-8, newlines as given) atomically."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""), fsync=fsync)


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Writes ``data`` atomically."""
    return write_with(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike, needed: Sequence[str] = (), *, writer: str | None = None) -> Any:
    """A JSON artifact; with ``needed``, an object that must have those keys.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON (empty or truncated), or lacking keys; the message names the file and the rule
            (``writer``) to rerun.
    """
    path = Path(path)
    rerun = f"delete it and rerun {writer or 'its stage'}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the workflow stage that writes it")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); {rerun}") from None
    missing = [k for k in needed if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise ValueError(f"{path} lacks {missing}; {rerun}")
    return obj


def read_table(
    path: str | os.PathLike, needed: Sequence[str] = (), *, min_rows: int = 0, writer: str | None = None
) -> pd.DataFrame:
    """A tidy CSV artifact that must have the columns ``needed`` and at least ``min_rows`` rows.

    Args:
        path: the CSV.
        needed: columns it must have.
        min_rows: rows it must have.
        writer: the workflow rule that writes it, named in the error (default: "its stage").

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty, truncated or unparsable file, or one lacking columns or rows; the message names the
            file and the rule to rerun.
    """
    path = Path(path)
    rerun = f"delete it and rerun {writer or 'the stage that writes it'}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the workflow stage that writes it or drop the flag")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is empty or not a CSV table ({str(err).splitlines()[0]}); {rerun}") from None
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; expected at least {list(needed)}; {rerun}")
    if len(frame) < min_rows:
        raise ValueError(f"{path} has {len(frame)} rows, expected at least {min_rows}; {rerun}")
    return frame


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    return write_with(path, lambda tmp: frame.to_csv(tmp, index=False))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars (arrays also have .item)
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
