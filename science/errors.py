"""Errors that name the input at fault, so callers can print them as they are.

Every error raised for bad input derives from :class:`InputError`: the CLI maps
it to exit code 2 and the Prefect tasks fail at once on it, without retries,
because running again on the same input cannot succeed.
"""


class InputError(Exception):
    """The user's input (a file, an extension, a configuration) cannot be used."""


class ConfigError(InputError):
    """A SExtractor configuration, parameter or filter file is invalid."""


class ExposureError(InputError):
    """An exposure file as a whole cannot be read; no catalogue is written."""


class CCDError(InputError):
    """One CCD extension cannot be measured; the others still can."""

    def __init__(self, path: str, extension: int, extname: str | None, reason: str):
        self.path = path
        self.extension = extension
        self.extname = extname
        self.reason = reason
        label = f"extension {extension}" + (f" ({extname})" if extname else "")
        super().__init__(f"{path}, {label}: {reason}")
