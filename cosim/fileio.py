"""Safe file input and atomic output, shared by every stage.

Writers put the whole file next to its destination under a temporary name and then
``os.replace`` it, so a killed run never leaves a half-written file. Readers never execute
code: NumPy files are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from cosim.errors import CosimError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file atomically through ``write(fileobj)``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically."""
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON (indented, sorted keys) atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str], remedy: str) -> Any:
    """Parse a JSON file (plain data; nothing is executed).

    Raises:
        CosimError: a file that is not valid JSON, with the path and ``remedy`` (what to do) in
            the message.
    """
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CosimError(f"{path} is corrupt ({exc}); {remedy}") from None


def write_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Write an uncompressed ``.npz`` atomically."""
    write_atomic(path, lambda fh: np.savez(fh, **arrays))


def load_array(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """Load a ``.npy`` (or the only array of an ``.npz``) without ever unpickling.

    Raises:
        CosimError: missing, unreadable, pickled or malformed files, with the path in the message.
    """
    p = Path(path)
    if not p.is_file():
        raise CosimError(f"{what} file {str(p)!r} does not exist.")
    with open(p, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise CosimError(f"{what} file {str(p)!r} is not a readable .npy/.npz file.")
    try:
        data = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise CosimError(f"{what} file {str(p)!r} holds Python objects, which are refused ({exc}).") from None
    except (OSError, EOFError) as exc:
        raise CosimError(f"{what} file {str(p)!r} is not a readable .npy/.npz file ({exc}).") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise CosimError(f"{what} file {str(p)!r} must hold exactly one array, found {len(data.files)}.")
            data = data[data.files[0]]
    if data.dtype.kind not in "biuf":
        raise CosimError(f"{what} file {str(p)!r} holds {data.dtype} data; a real-valued numeric array is needed.")
    return data


def load_npz(path: str | os.PathLike[str], what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (numbers or fixed-width strings), never unpickling.

    Raises:
        CosimError: missing, unreadable or pickled files, with the path in the message.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CosimError(f"{what} file {str(p)!r} does not exist.") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CosimError(f"{what} file {str(p)!r} is not a readable .npz file ({exc}).") from None
