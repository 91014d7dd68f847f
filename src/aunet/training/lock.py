"""One process trains into a run folder at a time.

Two ``aunet train`` commands on one folder (a job submitted twice, a resume typed while the first run still goes)
would both train from the same checkpoint and overwrite each other's records. The process that trains holds an
exclusive lock on ``<run>/.train.lock`` (``flock`` through the ``filelock`` package): the kernel drops it when the
process ends in any way, SIGKILL included, so a lock is never stale. The sweep runner's own ``.lock`` (which
worker owns a queued run) is another matter and is kept as it is.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import filelock

from aunet.errors import RunError


class RunFolderLock:
    """Held with ``with``; entering raises :class:`RunError` at once (no waiting) when another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = filelock.FileLock(str(self.path), timeout=0)

    def __enter__(self) -> "RunFolderLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # the run folder's first write
        except OSError as exc:  # checked before the data was prepared, but the filesystem may have changed since
            raise RunError(f"{self.path.parent}: cannot create the run folder ({exc.strerror or type(exc).__name__}); "
                           "give --run-dir a folder you can write") from None
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise RunError(f"{self.path.parent}: another process is training this run (it holds {self.path.name}); "
                           "wait for it to end, or stop it and continue with --resume") from None
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._lock.release()


def held_by_another(path: Path) -> bool:
    """Whether another process holds the run folder's lock ``path`` now (tried without waiting, released at once).

    A lock file that does not exist is held by nobody (it is not created here: the folder is only read)."""
    if not Path(path).is_file():
        return False
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    lock.release()
    return False
