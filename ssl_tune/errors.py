"""Errors that the CLI reports as one line with exit code 2."""


class UsageError(Exception):
    """Bad user input (config, flags, data dir). The CLI prints it as one line and exits 2."""


class TrainingStopped(Exception):
    """A run ended early on its own terms (diverged or collapsed). The CLI exits 1."""


class Interrupted(Exception):
    """The user stopped a run or sweep; its state is saved. The CLI exits 130 with how to resume."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none), for a one-line error."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
