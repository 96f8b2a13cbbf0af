"""Raw mail kept by content (sha256), so any decision can be replayed from the exact bytes;
and every file mailbot reads from disk, read bounded."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from .errors import Unusable

_KINDS = {stat.S_IFDIR: "目录", stat.S_IFIFO: "命名管道（FIFO）", stat.S_IFCHR: "字符设备",
          stat.S_IFBLK: "块设备", stat.S_IFSOCK: "套接字"}


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
    for directory in reversed([path.parent, path.parent.parent, Path(root)]):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # mail holds names and ID numbers
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
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


def get(root: Path, sha256: str, limit: int) -> bytes:
    return read(path_for(root, sha256), limit)


def _size(n: int) -> str:
    return f"{n / 2**20:.0f}MB" if n >= 2**20 else f"{max(n // 1024, 1)}KB"


def _refusal(info: os.stat_result, limit: int) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return f"不是普通文件，而是{_KINDS.get(stat.S_IFMT(info.st_mode), '特殊文件')}，请指定要读取的文件本身"
    if info.st_size > limit:
        return f"文件大小约{_size(info.st_size)}，超过系统可读取的上限{_size(limit)}"
    return None


def refusal(path: Path, limit: int) -> str | None:
    """Why `path` is not to be read (missing, not a regular file, over `limit` bytes), or None."""
    try:
        return _refusal(os.stat(path), limit)
    except FileNotFoundError:
        return "文件不存在"
    except PermissionError:
        return "没有读取权限"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def read(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, never more than `limit`, else Unusable: a FIFO
    named x.xlsx hung `mailbot check`, a symlink to /dev/zero ended in a MemoryError at 3.7 GB.
    Judged again on the open file (O_NONBLOCK: opening a FIFO never waits for a writer), so a
    file swapped after the first look is refused too."""
    why = refusal(path, limit)
    if why:
        raise Unusable([(str(path), why)])
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise Unusable([(str(path), refusal(path, limit) or exc.strerror)]) from None
    with os.fdopen(fd, "rb") as fh:
        why = _refusal(os.fstat(fd), limit)
        data = b"" if why else fh.read(limit + 1)
    if not why and len(data) > limit:
        why = f"文件在读取时增大，超过系统可读取的上限{_size(limit)}"
    if why:
        raise Unusable([(str(path), why)])
    return data
