"""Errors a user can fix. The CLIs print them as one line; anything else keeps its traceback."""


class UserError(Exception):
    """Bad input, config or command line; the message names the file, key or value at fault."""


class DataError(UserError, ValueError):
    """Bad input data; the message names the file, column, channel or value at fault."""


class ConfigError(UserError, ValueError):
    """A config key is missing, unknown or has a bad value; the message names it."""


class UnknownName(UserError, KeyError):
    """A registry name (model, source, criterion...) that is not registered; lists the known ones."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
