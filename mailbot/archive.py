"""Raw mail kept by content (sha256), so any decision can be replayed from the exact bytes."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def path_for(root: Path, sha256: str) -> Path:
    return Path(root) / sha256[:2] / sha256[2:4] / f"{sha256}.eml"


def put(root: Path, raw: bytes) -> str:
    """Store `raw` durably (write, fsync, rename) unless already there; returns its sha256."""
    sha = digest(raw)
    path = path_for(root, sha)
    if path.exists():
        return sha
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return sha


def get(root: Path, sha256: str) -> bytes:
    return path_for(root, sha256).read_bytes()
