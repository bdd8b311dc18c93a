"""One owner per state directory: an advisory lock held for the owner's lifetime.

Two workers that share a spool directory would write the same segment names
and replay (then delete) each other's segments. The first to open the
directory takes ``<dir>/.lock`` with ``flock``; the kernel drops the lock when
that process ends, however it ends, so a crash never leaves a stale lock. A
second worker is refused with one line naming the directory and the owner's
pid.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from faaslens.ingest.config import ConfigError

LOCK_NAME = ".lock"


class DirectoryInUse(ConfigError):
    """Another process owns the directory."""


class DirectoryLock:
    """``acquire()`` / ``release()`` the lock of one directory (created if missing)."""

    def __init__(self, directory: str | os.PathLike[str], what: str = "directory") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DirectoryInUse` (OSError: the directory itself)."""
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DirectoryInUse(
                f"{self.what} {self.directory} is in use by another worker (pid {owner}); "
                "give each worker its own state_dir (or spool_dir)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
