"""Every error resx raises on purpose, in one place. The CLI prints a ResxError's message as one line and
exits 1; anything else is a bug in resx and keeps its traceback."""


def first_line(e: BaseException, limit: int | None = 200) -> str:
    """The first line of an error's message (at most `limit` characters), or its type's name when it has
    none: how a problem from torch or from a user's code is quoted in resx's one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


class ResxError(Exception):
    """An input, file or environment problem; the message names the thing and the fix, on one line."""


class ConfigError(ResxError, ValueError):
    """A setting out of range or of an unknown kind (also a ValueError, for library callers)."""


class DataError(ResxError):
    """A CIFAR-10 file or directory is unusable; the message names it and says what is wrong."""


class ExportError(ResxError):
    """A resx export cannot be made or read; the message names the file and the fix."""


class TrainError(ResxError):
    """A run cannot start or continue; the message names the input and the fix."""


class BenchError(ResxError):
    """The benchmark cannot run fairly (or at all); the message says why and what to do."""


class PeerError(ResxError):
    """Another rank of a data-parallel run failed and printed why; this one exits 1 without repeating it."""


class LaunchError(ResxError):
    """A rank of a launched run failed; the message names it (empty: the ranks printed why)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class CppRuntimeError(RuntimeError):
    """resx-cpp failed in a way no input explains (it exited neither 0 nor 1): a bug to report."""
