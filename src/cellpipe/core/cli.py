"""Shared entry point of the fire CLIs: logging set-up and one-line errors.

Bad input (a UserError: DataError, ConfigError, UnknownName; or a missing or
unreadable file) ends the program with ``error: <cause>`` on stderr and exit
code 1; set DEBUG=1 to see the traceback instead. Any other exception is a
programming error and keeps its traceback.
"""
import logging
import os
import sys
from typing import NoReturn

from cellpipe.core.errors import UserError

USER_ERRORS = (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def setup_logging(*handlers: logging.Handler) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[logging.StreamHandler(sys.stderr), *handlers], force=True)


def fail(error: BaseException) -> NoReturn:
    if os.environ.get("DEBUG"):
        raise error
    raise SystemExit(f"error: {error}")


def run(component) -> None:
    """``fire.Fire(component)`` with the project's logging and error handling."""
    import fire

    setup_logging()
    try:
        fire.Fire(component)
    except USER_ERRORS as e:
        fail(e)
