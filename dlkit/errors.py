"""Errors a user can fix. The CLI prints them as one line (a traceback only with --debug).

Standard library only: every layer of dlkit (backends, data, config, plugins) raises these.
"""
import difflib
from collections.abc import Iterable


class DlkitError(Exception):
    """A mistake in input or environment, reported to the user as one clear line."""


class DataUnavailable(DlkitError):
    """A dataset file is not cached and could not be downloaded."""


class TrainingInterrupted(DlkitError):
    """Training stopped on Ctrl-C; the run folder holds the last completed epoch."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """``Type: first line`` — how an error from plugin or library code is reported to the user."""
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


def suggest(word: str, candidates: Iterable[str]) -> str:
    """' Did you mean 'x'?' or '' — appended to an 'unknown …' error."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
