"""Errors caused by the user's data or config. The command line prints their message alone."""


class PluginError(Exception):
    """Base class: the message names the file/line or config key and what to do."""


class ConfigError(PluginError, ValueError):
    """A config value is missing, of the wrong kind or out of range."""


class DataError(PluginError, ValueError):
    """A data file is missing or malformed."""


def exit_status(command, debug=False):
    """Run a command line's ``command()`` and return its exit status; a ``PluginError`` prints its
    message alone (``debug``: raises, for the traceback) and gives 2."""
    import sys

    try:
        return command()
    except PluginError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
