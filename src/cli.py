"""Shared entry point of the fire CLIs: logging set-up and one-line errors.

Bad input (DataError, ConfigError, missing files, unknown registry names) ends
the program with ``error: <cause>`` on stderr and exit code 1; set DEBUG=1 to
see the traceback instead.
"""
import logging
import os
import sys
from typing import NoReturn

USER_ERRORS = (ValueError, OSError, KeyError)  # DataError and ConfigError are ValueErrors


def setup_logging(*handlers: logging.Handler) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[logging.StreamHandler(sys.stderr), *handlers], force=True)


def fail(error: BaseException) -> NoReturn:
    if os.environ.get("DEBUG"):
        raise error
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    raise SystemExit(f"error: {message}")


def run(component) -> None:
    """``fire.Fire(component)`` with the project's logging and error handling."""
    import fire

    setup_logging()
    try:
        fire.Fire(component)
    except USER_ERRORS as e:
        fail(e)
