"""User-facing errors: `launch.py` prints them as one line and exits with status 2."""


class UserError(ValueError):
    """Bad input from the user (config, data, workdir). The message is one line that names the
    field or file, the value, and what is accepted."""


class ConfigError(UserError):
    """A config field has a value that is not accepted."""


class DataError(UserError):
    """A data file or folder is missing, truncated, corrupt or inconsistent."""
