"""Errors that `main` reports as a single line instead of a traceback."""


class ConfigError(ValueError):
  """The config or a flag asks for something that cannot work.

  Raised before any expensive work (dataset building, compilation); the
  message names the problem and the fix.
  """
