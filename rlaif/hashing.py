"""The content hash of a file or a folder (sha256), for provenance and stage keys.

Why a leaf module: the pipeline's stage keys and the adapter card (rlaif/train/card.py) both need
it, and the pipeline imports the trainers, so the hash cannot live in pipeline.py without an
import cycle. A folder's hash covers its files' relative names and contents, in sorted order.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(content_hash(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
