"""A run directory claimed by one process, so that several ``compare`` calls can share one grid.

``RUN.lock`` (beside the run directory ``RUN``) holds the host and pid of the process training it; it is
created atomically with its content (a hard link to a file already written, which fails if the lock
exists), so of two processes that reach the same unfinished run, one trains it and the other moves on. A lock whose process is gone (same host, pid no longer running: killed,
crashed) is taken over. A lock from another host cannot be checked from here: it is respected until it is
deleted. (Two processes taking over the same stale lock at the same instant could both train the run; the
window is the time between reading the stale lock and creating the new one.)
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path


class RunLock:
    """``RunLock(directory).acquire()`` claims ``directory`` (None: claimed; else who holds it);
    ``release()`` gives it back."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        self.path = directory.with_name(directory.name + ".lock")
        self.held = False

    def acquire(self) -> str | None:
        """Claim the run: None if this process now holds it, else a description of the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after removing a stale lock
            mine = self.path.with_name(f"{self.path.name}.{socket.gethostname()}.{os.getpid()}")
            mine.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
            try:
                os.link(mine, self.path)  # atomic, content included: never seen half-written
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    return f"process {holder.get('pid')} on {holder.get('host')}"
                self.path.unlink(missing_ok=True)  # stale (its process is gone) or unreadable: take it over
                continue
            finally:
                mine.unlink(missing_ok=True)
            self.held = True
            return None
        return f"another process (it claimed {self.path} just now)"

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # removed meanwhile, or not a lock this code wrote
        return holder if isinstance(holder, dict) else None


def _alive(holder: dict) -> bool:
    """Whether the lock's process may still run: unknowable for another host (then True)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False  # this process's own leftover (an earlier call in it was interrupted): take it back
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
