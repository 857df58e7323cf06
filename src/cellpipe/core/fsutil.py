"""Atomic writes: files and whole folder trees appear complete or not at all."""
import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask once (os has no getter)
FOLDER_MODE = 0o777  # a new folder's mode before the umask, as mkdir gives it


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename onto it on success.

    A crash or exception leaves any existing ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def link_atomic(src, path) -> None:
    """``path`` becomes the file ``src`` is now (a hard link; a copy where the file system has none),
    atomically."""
    with atomic_path(path) as tmp:
        os.remove(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def write_csv(df, path, **kwargs):
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)


def write_npy(array, path):
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_text(text: str, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_png(image, path):
    """An 8-bit image (HxW, or HxWx3 in OpenCV's BGR order) as a PNG."""
    import cv2

    with atomic_path(path) as tmp:  # the temporary name keeps the .png suffix cv2 needs
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"cv2.imwrite failed for {path}")


@contextlib.contextmanager
def staged_dir(target):
    """Yield an empty hidden folder beside ``target``; on success it replaces ``target`` by rename.

    On any exception the staged folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(staged, FOLDER_MODE & ~_UMASK)  # mkdtemp makes it private (0700); the tree is shared data
    try:
        yield staged
        replace_dir(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def check_replaceable(folder, overwrite: bool) -> Path:
    """``folder`` as a Path, if it is absent, empty or ``overwrite`` says its contents may go."""
    from cellpipe.core.errors import DataError

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise DataError(f"{folder} is not empty; pass --overwrite to replace it (its contents go)")
    return folder


def replace_dir(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; an existing ``target`` is first renamed aside, then deleted.

    Two renames on one file system: the old tree is never mixed with the new one. Should the
    second rename fail, the old tree is put back.
    """
    if not target.exists():
        os.replace(staged, target)
        return
    # an empty folder may be replaced by rename, so mkdtemp gives a unique name to move the old tree onto
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old)


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
