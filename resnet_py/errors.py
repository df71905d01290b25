"""The errors a user can fix. The CLI prints their message as one line and exits 1; anything else is a
bug in resx and keeps its traceback."""


class ResxError(Exception):
    """An input, file or environment problem; the message names the thing and the fix, on one line."""


class ConfigError(ResxError, ValueError):
    """A setting out of range or of an unknown kind (also a ValueError, for library callers)."""


class PeerError(ResxError):
    """Another rank of a data-parallel run failed and printed why; this one exits 1 without repeating it."""
