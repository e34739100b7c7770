"""Files of the embedded default (SQLite stores, keys): readable by the service's user only.

Folders 0700, files 0600, whatever the umask. Secrets made on first run are written whole to a
temporary file and linked into place, so processes starting at once agree on one secret.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path, *, force: bool = True) -> Path:
    """Create ``path`` (and parents) if needed; make it 0700 if it was created here or ``force``."""
    existed = path.exists()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if force or not existed:
        path.chmod(0o700)  # mkdir's mode is reduced by the umask; chmod is not
    return path


def private_file(path: Path) -> None:
    """0600, if it exists."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except FileNotFoundError:
        pass


def private_sqlite(path: Path, *, private_folder: bool = True) -> Path:
    """Prepare a SQLite database file: its folder 0700, the file created 0600 before SQLite opens
    it (SQLite gives its -wal and -shm files the database file's mode), and any existing
    companion files tightened."""
    private_dir(path.parent, force=private_folder)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in SQLITE_COMPANIONS:
        private_file(path.with_name(path.name + suffix))
    return path


def load_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The text of a secret file, made with ``make()`` on first run (0600, its folder 0700)."""
    private_dir(path.parent, force=False)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(make() + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process was first: use its secret
        finally:
            tmp.unlink(missing_ok=True)
    private_file(path)
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.02)  # a file made by hand, being written
    raise RuntimeError(f"secret file {path.name} is empty")
