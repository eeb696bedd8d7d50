"""Errors that are the user's to fix: the CLI prints them as one line, no traceback."""


class FFrayError(Exception):
    """A problem with the user's input or environment (bad file, bad option, ...)."""

    exit_code = 2


class MediaError(FFrayError):
    """An input or intermediate media file cannot be used."""


class JobFailed(FFrayError):
    """A job could not finish (a chunk ran out of attempts); finished chunks are kept."""

    exit_code = 1


class StorageError(FFrayError):
    """A write to the data dir or the destination failed (no space, permissions, I/O error);
    what was written before stays, so the job can be resumed once the cause is fixed."""

    exit_code = 1
