"""Artifact writers and readers. Every writer is atomic (temp file, then rename), so an
interrupted job never leaves a half-written artifact that a rerun would mistake for done."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "atomic_dir",
    "atomic_path",
    "read_json",
    "read_table",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_text",
    "write_with",
]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, *, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success renames it onto ``path``.

    This is the package's one atomic writer: every artifact goes through it (directly, or through
    :func:`write_with` and the ``write_*`` helpers). The temporary file keeps the target's suffix
    (some writers choose the format from it) and gets the permissions ``open()`` would give. With
    ``fsync`` its contents are flushed to disk before the rename (a resumable training state that
    must survive a power cut, not only a killed process). On error it is removed and ``path`` is
    left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix or target.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
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


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the workflow stage that writes it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and rerun its stage") from None


def read_table(path: str | os.PathLike, needed: Sequence[str] = ()) -> pd.DataFrame:
    """A tidy CSV artifact that must have the columns ``needed``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the workflow stage that writes it or drop the flag")
    frame = pd.read_csv(path)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; expected at least {list(needed)}")
    return frame


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    return write_with(path, lambda tmp: frame.to_csv(tmp, index=False))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars (arrays also have .item)
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
