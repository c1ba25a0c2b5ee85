"""A run directory claimed by one process, so that several ``compare`` calls can share one grid.

``RUN.lock`` (beside the run directory ``RUN``) is held with an exclusive ``flock`` by the process training
``RUN``, and names it (host, pid) for the others' messages. The kernel releases the lock when its process
ends, however it ends (killed, crashed), so there is no stale lock to detect, no pid that could be reused,
and no takeover to race: of two processes that reach the same unfinished run, exactly one gets the lock.
On release the holder removes the file; a process that locked a file just removed (it opened the old
file before the removal) sees that the path no longer names its file and tries again.

Scope: processes that share a filesystem with working ``flock`` (local disks; NFS emulates it with POSIX
locks, so hosts that share an NFS mount exclude each other too). Where the filesystem refuses file locks,
:meth:`RunLock.acquire` says so and the run proceeds unguarded (one process per grid is then the rule).
Under ``accelerate launch`` no lock is taken: the processes of one launch train every run together.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

#: errors a filesystem gives when it does not support ``flock``
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class RunLock:
    """``RunLock(directory).acquire()`` claims ``directory`` (None: claimed; else who holds it);
    ``release()`` gives it back (and the lock goes with the process in any case)."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        self.path = directory.with_name(directory.name + ".lock")
        self.descriptor: int | None = None
        self.unguarded = False  # the filesystem refused file locks: acquired without one

    @property
    def held(self) -> bool:
        return self.descriptor is not None or self.unguarded

    def acquire(self) -> str | None:
        """Claim the run: None if this process now holds it, else a description of the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                return self._holder()
            except OSError as error:
                os.close(descriptor)
                if error.errno not in _NO_LOCKS:
                    raise
                self.unguarded = True
                return None
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is None or current.st_ino != os.fstat(descriptor).st_ino:
                os.close(descriptor)  # locked a file its holder removed on release: the path is a new one
                continue
            os.ftruncate(descriptor, 0)
            os.write(descriptor, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
            self.descriptor = descriptor
            return None

    def release(self) -> None:
        """Remove the lock file, then unlock (in that order: a process waiting on the old file then sees the
        path changed and starts over)."""
        if self.descriptor is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.descriptor)  # closing releases the flock
            self.descriptor = None
        self.unguarded = False

    def _holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        if isinstance(holder, dict) and "pid" in holder:
            return f"process {holder.get('pid')} on {holder.get('host')}"
        return f"another process (it claimed {self.path} just now)"
