"""Errors a user can fix. The CLI prints them as one line (a traceback only with --debug)."""


class DlkitError(Exception):
    """A mistake in input or environment, reported to the user as one clear line."""


class DataUnavailable(DlkitError):
    """A dataset file is not cached and could not be downloaded."""


class TrainingInterrupted(DlkitError):
    """Training stopped on Ctrl-C; the run folder holds the last completed epoch."""
