"""One process per output folder, and room to write before any work starts.

``run_lock(folder)`` holds an exclusive ``fcntl`` lock on ``folder/.lock`` (which holds the pid and
host of its holder) for the life of the block. A second process on the same folder stops at once
with a message naming the holder; the kernel drops the lock of a process that dies (even by
SIGKILL), so a lock file left behind is simply taken over.
"""
import errno
import fcntl
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from cellpipe.core.errors import DataError

LOCK_FILE = ".lock"


@contextmanager
def run_lock(folder, what: str = "run"):
    folder = Path(folder)
    check_writable(folder)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise DataError(f"{folder}: this {what} is in use by {holder}; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (a later run takes it over)


def check_writable(folder) -> None:
    """Create ``folder`` and write a file in it, or fail with one line naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise DataError(f"output folder {folder} is not writable ({e.strerror or e})") from None


def check_free_space(folder, needed_bytes: int, what: str) -> None:
    """Fail before the work starts when ``folder``'s file system has less room than ``needed_bytes``."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise DataError(f"not enough free space in {folder}: {free / 2**20:.0f} MiB free, {what} needs about "
                        f"{needed_bytes / 2**20:.0f} MiB")
