"""Error types that the notebooks and the Makefile show to users as-is.

Each carries a message that names the file, line or key at fault, so a user never has to read a
traceback from inside a library to know what to fix.
"""


class SotopiaPiError(Exception):
    """Base class for errors meant to be read by a user."""


class DataError(SotopiaPiError):
    """A data file is missing, corrupted or malformed."""


class ConfigError(SotopiaPiError):
    """A params file or model spec is invalid."""


class BackendError(SotopiaPiError):
    """An LLM backend cannot be built or a request failed for good."""
