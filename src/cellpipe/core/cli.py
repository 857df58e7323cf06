"""Shared entry point of the fire CLIs: logging set-up and one-line errors.

Bad input (a UserError: DataError, ConfigError, UnknownName; or a missing or
unreadable file) ends the program with ``error: <cause>`` on stderr and exit
code 1; set DEBUG=1 to see the traceback instead. Any other exception is a
programming error and keeps its traceback.
"""
import functools
import inspect
import logging
import os
import sys
import typing
from typing import NoReturn

from cellpipe.core.errors import ConfigError, UserError

USER_ERRORS = (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def setup_logging(*handlers: logging.Handler) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[logging.StreamHandler(sys.stderr), *handlers], force=True)


def fail(error: BaseException) -> NoReturn:
    if os.environ.get("DEBUG"):
        raise error
    raise SystemExit(f"error: {error}")


BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _expected(param: inspect.Parameter):
    """The scalar type a flag must have: its annotation (Optional allowed), else its default's type."""
    annotation, optional = param.annotation, False
    if typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else inspect.Parameter.empty
    if annotation in (int, float, bool):
        return annotation, optional or param.default is None
    if annotation is inspect.Parameter.empty and type(param.default) in (int, float, bool):
        return type(param.default), False
    return None, True


def check_flags(func):
    """Wrap a CLI function so that a flag of the wrong type (``--n_folds=five``, ``--cell_types HEPG2``)
    is one line naming the flag, not a traceback from deep inside."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise ConfigError(f"{func.__name__.replace('_', '-')}: {e}") from None
        for name, value in bound.arguments.items():
            kind, optional = _expected(signature.parameters[name])
            if kind is None or (value is None and optional) or not isinstance(value, str):
                continue  # fire already parsed numbers and lists; only text can be a wrong type here
            if kind is bool and value.lower() in BOOLEANS:
                bound.arguments[name] = BOOLEANS[value.lower()]  # fire reads only True/False as booleans
                continue
            expected = {bool: "true or false", float: "a number", int: "an integer"}[kind]
            raise ConfigError(f"flag --{name}: expected {expected}, got {value!r}")
        return func(*bound.args, **bound.kwargs)

    return wrapper


def _checked(component):
    if isinstance(component, dict):
        return {k: _checked(v) for k, v in component.items()}
    return check_flags(component) if inspect.isfunction(component) else component


def run(component, argv=None) -> None:
    """``fire.Fire(component)`` (on ``argv``, default sys.argv) with the project's logging, flag checks
    and error handling."""
    import fire

    setup_logging()
    try:
        fire.Fire(_checked(component), command=argv)
    except USER_ERRORS as e:
        fail(e)


def mapping(value, flag: str):
    """A flag that takes a mapping (``--source_params "{csv: load_data.csv}"``): a dict as given, or
    YAML / JSON flow text; None stays None."""
    if value is None or isinstance(value, dict):
        return value
    import yaml

    try:
        parsed = yaml.safe_load(str(value))
    except yaml.YAMLError as e:
        raise ConfigError(f"--{flag}: cannot parse {value!r}: {e}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"--{flag} must be a mapping such as \"{{key: value}}\", got {value!r}")
    return parsed
