"""Errors a user can fix. The CLI prints them as one line (a traceback only with --debug).

Standard library only: every layer of dlkit (backends, data, config, plugins) raises these.
"""
import difflib
import re
from collections.abc import Iterable

#: Keras re-raises an error from inside a layer's call under this line, with the error itself below it in bold.
KERAS_WRAPPER = "Exception encountered when calling"
_TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*m")


class DlkitError(Exception):
    """A mistake in input or environment, reported to the user as one clear line."""


class DataUnavailable(DlkitError):
    """A dataset file is not cached and could not be downloaded."""


class TrainingInterrupted(DlkitError):
    """Training stopped on Ctrl-C; the run folder holds the last completed epoch."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty.

    For an error Keras wrapped ("Exception encountered when calling X.call()."), the error's own line.
    """
    lines = [line.strip() for line in _TERMINAL_STYLE.sub("", str(exc)).splitlines() if line.strip()]
    told = [line for line in lines if not line.startswith(KERAS_WRAPPER)]
    return (told or lines or [type(exc).__name__])[0]


def one_line(exc: BaseException) -> str:
    """``Type: first line`` — how an error from plugin or library code is reported to the user."""
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


def suggest(word: str, candidates: Iterable[str]) -> str:
    """' Did you mean 'x'?' or '' — appended to an 'unknown …' error."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
