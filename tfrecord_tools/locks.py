"""One writer per output directory: an advisory lock on a lock file inside it.

Two processes writing the same run directory or fold directory would interleave checkpoints,
shards and JSON files. ``DirectoryLock`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
``DIR/.videosim.lock``: a second writer fails at once with ``LockedError`` naming the holder (pid,
host, command, start time, which the holder writes into the file). The kernel releases a flock
when its holder exits in any way, SIGKILL included, so a killed owner never leaves the directory
stuck; the next writer simply takes the lock (the stale holder text is overwritten).

The lock file is removed on release (and the directory, if the lock created it and it is empty); after taking a lock the holder checks
that the file it locked is still the one at the path (another releaser may have unlinked it), and
retries otherwise, so two writers can never both hold it.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Iterator

LOCK_NAME = ".videosim.lock"


class LockedError(RuntimeError):
    """Another live process holds the directory's lock."""

    def __init__(self, directory: str, holder: str):
        self.directory = directory
        self.holder = holder
        super().__init__(f"{directory} is being written by another process ({holder}); wait for it to finish or "
                         f"stop it, or write somewhere else (the lock is {os.path.join(directory, LOCK_NAME)}, "
                         "released automatically when that process exits)")


def _holder_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        return (f"pid {info.get('pid')} on {info.get('host')}, {info.get('purpose')}, since {info.get('since')}: "
                f"{info.get('command')}")
    except (OSError, ValueError, AttributeError):
        return "holder unknown"


class DirectoryLock:
    """Exclusive, non-blocking lock of ``directory`` (created if needed) for ``purpose``."""

    def __init__(self, directory: str | os.PathLike, purpose: str):
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self.directory, LOCK_NAME)
        self.purpose = purpose
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> "DirectoryLock":
        self._created = not os.path.isdir(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(self.directory, _holder_text(self.path)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file was unlinked by a releasing holder: lock the new one
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still locked: a waiting opener sees another inode and retries
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if self._created:  # a writer that failed before writing anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                os.rmdir(self.directory)

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def locked(directory: str | os.PathLike, purpose: str) -> Iterator[DirectoryLock]:
    """``with locked(dir, "finetune"):`` -- hold ``directory``'s lock for the block."""
    with DirectoryLock(directory, purpose) as lock:
        yield lock
