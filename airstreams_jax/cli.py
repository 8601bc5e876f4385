"""Command-line helpers shared by the entry points (`main`, `model_info`)."""

import sys
from typing import Callable, List

from absl import flags


def one_line(error: Exception) -> str:
  """The informative lines of a flag or config-loading error, in one line."""
  text = str(error).replace('\\n', '\n').replace("\\'", "'")
  lines = [line.strip() for line in text.splitlines()]
  lines = [line.strip("'") if line.startswith("'") else line for line in lines]
  # The text is often a repr: drop a closing quote left without its opener.
  lines = [line[:-1] if line.endswith("'") and line.count("'") % 2 else line
           for line in lines]
  lines = [line for line in lines if line and not line.startswith(
      ('Traceback', 'File ', '^'))]
  if isinstance(error, AttributeError):  # ml_collections: unknown key.
    return f'unknown config key {lines[0]!r}' + (
        f'. {lines[-1]}' if len(lines) > 1 else '')
  if isinstance(error, OSError):
    return f'cannot load the config file: {lines[-1]}'
  # A config file that failed to load: its flag, then the final exception.
  return lines[0] if len(lines) == 1 else f'{lines[0]} {lines[-1]}'


def flags_parser(config_flag) -> Callable[[List[str]], List[str]]:
  """An `app.run` flags parser that reports config mistakes in one line.

  A misspelt `--config.<key>` surfaces from ml_collections as an
  AttributeError, and a failing config file as a multi-line traceback text;
  both exit with `error: ...` instead.

  Args:
    config_flag: the holder returned by `config_flags.DEFINE_config_file`.
  """
  def parse(argv):
    try:
      argv = flags.FLAGS(argv)
      # A config file that fails to load leaves a placeholder that raises on
      # first use: use it here, while errors are still one-liners.
      config_flag.value.keys()
      return argv
    except (flags.Error, AttributeError, KeyError, TypeError, OSError) as e:
      sys.exit(f'error: {one_line(e)}')
  return parse
