"""Writing files so that a reader (or a kill) never sees half of one.

Every small state file the project writes and later trusts (``results.json``, a comparison's recipe and
tables) goes through :func:`write_text_atomic`: the text is written to a fresh temporary file beside the
target and renamed over it, so at every instant the target holds either its old or its new complete content.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (same folder temporary + ``os.replace``; the temporary is
    removed if anything fails before the rename)."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
