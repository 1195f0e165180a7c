"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Each writer puts the content into a temporary file in the destination's directory, fsyncs it and
renames it over the destination with :func:`os.replace` (atomic on POSIX and Windows within one
file system). On any failure the temporary file is removed and the destination is left untouched.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The new file gets the mode of the file it replaces, or the process umask's default for a new
    file. The parent directory must exist.
    """
    path = Path(path)
    tmp_path = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never write into a file someone else created; mode 0o666 lets the umask apply
    # (tempfile.mkstemp would force 0o600 on a file that is meant to be shared).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp_path, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.chmod(tmp_path, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically as indented JSON with a trailing newline.

    Nothing is written if ``obj`` holds NaN or infinities (:class:`ValueError`: strict JSON has no
    spelling for them) or values :func:`json.dumps` cannot serialise (:class:`TypeError`).
    """
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; a no-op where directories cannot be opened (Windows)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
