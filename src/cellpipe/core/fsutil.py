"""Atomic file writes: outputs appear complete or not at all."""
import contextlib
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask once (os has no getter)


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
