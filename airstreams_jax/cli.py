"""How every command of the package starts: huge pages for the host buffers,
a quiet TensorFlow start-up, absl flags with one-line errors, and the console /
log-file split of a run's logging.

Every entry point (`python -m airstreams_jax.<command>`) has the same shape:

  if __name__ == '__main__':
    # Before any other import: see cli.start.
    from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
    _cli.start()

  ...imports...

  def define_flags() -> None:
    # Defined by `cli.run`: importing the module defines no flag.
    flags.DEFINE_string('workdir', None, '...')
    flags.mark_flags_as_required(['workdir'])

  def main() -> None:
    ...  # reads flags.FLAGS.workdir

  if __name__ == '__main__':
    cli.run(main, define_flags)
"""

import importlib
import importlib.util
import logging
import os
import platform
import sys
import tempfile
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Type)

from absl import app
from absl import flags
from absl import logging as absl_logging


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
    key = lines[0].strip('\'" ')  # Quoted once or twice, by version.
    return f'unknown config key {key!r}' + (
        f'. {lines[-1]}' if len(lines) > 1 else '')
  if isinstance(error, OSError):
    return f'cannot load the config file: {lines[-1]}'
  # A config file that failed to load: its flag, then the final exception.
  return lines[0] if len(lines) == 1 else f'{lines[0]} {lines[-1]}'


def flags_parser(config_flag, flag_values: Optional[flags.FlagValues] = None
                 ) -> Callable[[List[str]], List[str]]:
  """An `app.run` flags parser that reports config mistakes in one line.

  A misspelt `--config.<key>` surfaces from ml_collections as an
  AttributeError, and a failing config file as a multi-line traceback text;
  both exit with `error: ...` instead.

  Args:
    config_flag: the holder returned by `config_flags.DEFINE_config_file`.
    flag_values: where the flags are defined; absl's global FLAGS by default.
  """
  def parse(argv):
    try:
      argv = (flag_values or flags.FLAGS)(argv)
      # A config file that fails to load leaves a placeholder that raises on
      # first use: use it here, while errors are still one-liners.
      config_flag.value.keys()
      return argv
    except (flags.Error, AttributeError, KeyError, TypeError, OSError) as e:
      sys.exit(f'error: {one_line(e)}')
  return parse


# What TensorFlow's native libraries print while they load (oneDNN, CPU
# features, absl's pre-initialisation notice): true on every machine, useful
# on none, and printed before any flag can be read.
_NATIVE_STARTUP_CHATTER = (
    'All log messages before absl::InitializeLog()',
    'oneDNN custom operations are on',
    'cpu_feature_guard.cc',
    'To enable the following instructions',
    'rebuild TensorFlow with the appropriate compiler flags',
)


# glibc's malloc backs large allocations with transparent huge pages (2 MiB)
# when this tunable is set (glibc >= 2.35; older ones ignore it).
HUGE_PAGES_TUNABLE = 'glibc.malloc.hugetlb=1'
_THP_SETTING = '/sys/kernel/mm/transparent_hugepage/enabled'


def huge_pages_environment(environ: Mapping[str, str],
                           thp_setting: Optional[str] = None,
                           libc: Tuple[str, str] = ('', '')
                           ) -> Optional[Dict[str, str]]:
  """The environment to re-run this process in for huge pages, or None.

  XLA:CPU allocates each step's large buffers afresh (hundreds of MB to GB)
  and glibc maps them in 4 KiB pages: the synthetic train step then took
  88,000 page faults and the TLB misses of 343 MB a step. With
  `glibc.malloc.hugetlb=1` the same step took 0.25 s instead of 0.35-0.47 s,
  the paper-scale one 2.8 s instead of 3.9 s (README "Performance").

  Args:
    environ: the current environment.
    thp_setting: the kernel's transparent-huge-page mode file's text (read
      from /sys when None); with '[never]' selected there is nothing to gain.
    libc: `platform.libc_ver()` (read when empty).

  Returns:
    A copy of `environ` with the tunable added to GLIBC_TUNABLES, or None
    where it would change nothing: not Linux with glibc >= 2.35, huge pages
    off in the kernel, or GLIBC_TUNABLES already naming glibc.malloc.hugetlb
    (set it to glibc.malloc.hugetlb=0 to opt out).
  """
  tunables = environ.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb' in tunables or not sys.platform.startswith(
      'linux'):
    return None
  name, version = libc if libc[0] else platform.libc_ver()
  try:
    major_minor = tuple(int(v) for v in version.split('.')[:2])
  except ValueError:
    return None
  if name != 'glibc' or major_minor < (2, 35):
    return None
  if thp_setting is None:
    try:
      with open(_THP_SETTING) as f:
        thp_setting = f.read()
    except OSError:
      return None
  if '[never]' in thp_setting or '[' not in thp_setting:
    return None
  env = dict(environ)
  env['GLIBC_TUNABLES'] = ':'.join(filter(None, (tunables,
                                                 HUGE_PAGES_TUNABLE)))
  return env


# Set in the re-run process: if something strips GLIBC_TUNABLES on the way
# (a secure-mode interpreter, a wrapper that cleans the environment), the
# process still re-runs only once.
_RERUN_MARKER = 'AIRSTREAMS_JAX_HUGE_PAGES_RERUN'


def _started_as_main_file() -> bool:
  """Whether this interpreter was started to run the `__main__` module's
  file (`python -m pkg.mod` or `python path/mod.py`), not a host that runs
  it inside (IPython's `%run`, a debugger, `python -c`, a script on stdin),
  which re-running would replace."""
  main_file = getattr(sys.modules.get('__main__'), '__file__', None)
  args = sys.orig_argv[1:]
  if not main_file or not args:
    return False
  if '-m' in args:
    name = args[args.index('-m') + 1:][:1]
    spec = importlib.util.find_spec(name[0]) if name else None
    if spec and spec.submodule_search_locations:  # A package: its __main__.
      spec = importlib.util.find_spec(name[0] + '.__main__')
    return bool(spec and spec.origin and os.path.samefile(spec.origin,
                                                          main_file))
  paths = [a for a in args if os.path.isfile(a)]
  return bool(paths) and os.path.samefile(paths[0], main_file)


def use_huge_pages() -> None:
  """Re-runs this command with glibc's huge pages on, where that helps.

  Call it first thing in a command-line entry point (under
  `if __name__ == '__main__':`): glibc reads its tunables when a process
  starts, so the process replaces itself (`os.execve`: same PID, arguments
  and environment plus the tunable) before it has loaded or computed
  anything. Child processes inherit the setting. See
  `huge_pages_environment` for when it does nothing; it also does nothing
  when the module runs inside another program (`_started_as_main_file`) and
  carries on without huge pages if the re-run cannot start.
  """
  if os.environ.get(_RERUN_MARKER) or not _started_as_main_file():
    return
  env = huge_pages_environment(os.environ)
  if env is None:
    return
  env[_RERUN_MARKER] = '1'
  for stream in (sys.stdout, sys.stderr):
    if stream is not None:
      stream.flush()
  try:
    os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
  except OSError:
    pass


def quiet_tensorflow_import() -> None:
  """Imports TensorFlow with its native start-up lines held back.

  Call it first thing in a command-line entry point (under
  `if __name__ == '__main__':`), before anything else imports TensorFlow:
  the oneDNN notice ignores TF_CPP_MIN_LOG_LEVEL and is written straight to
  file descriptor 2, so it is caught there, while TensorFlow loads. Lines
  that are not known start-up chatter are passed on unchanged.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if 'tensorflow' in sys.modules:
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      importlib.import_module('tensorflow')
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode('utf-8', errors='replace')
  kept = without_startup_chatter(text)
  if kept:
    print(kept, file=sys.stderr)


def without_startup_chatter(text: str) -> str:
  """`text` without TensorFlow's native start-up lines (and blank lines)."""
  return '\n'.join(
      line for line in text.splitlines()
      if line.strip() and not any(c in line for c in _NATIVE_STARTUP_CHATTER))


def _is_ours(record: logging.LogRecord) -> bool:
  path = record.pathname.replace(os.sep, '/')
  return any(f'/{package}/' in path for package in _OUR_PACKAGES)


_OUR_PACKAGES = ('airstreams_jax', 'experiments', 'configs')
# `logging.info(..., extra={FILE_ONLY: True})`: for the log file only (e.g.
# the traceback behind a one-line console error).
FILE_ONLY = 'airstreams_file_only'
# clu's progress note: "1.6 steps/s, 33.3% (200/600), ETA: 4m (0m : 1.2% data)".
_PROGRESS_PREFIX = 'Setting work unit notes: '


class _ConsoleFilter(logging.Filter):
  """What a person watching a run needs: our messages, the progress line and
  errors. Library INFO and WARNING records (deprecations, per-save detail,
  every scalar) go to the log file only."""

  def filter(self, record: logging.LogRecord) -> bool:
    if getattr(record, FILE_ONLY, False):
      return False
    # asyncio's "Task exception was never retrieved": Orbax's background
    # writes that failed after the run's error (a full disk) was reported in
    # one line; collected while the process ends, they would print after it.
    if record.name == 'asyncio':
      return False
    if record.levelno >= logging.ERROR or _is_ours(record):
      return True
    return record.getMessage().startswith(_PROGRESS_PREFIX)


class _ConsoleFormatter(logging.Formatter):
  """'12:03:45 message', with 'warning: ' or 'error: ' when it is one."""

  def format(self, record: logging.LogRecord) -> str:
    message = record.getMessage()
    if message.startswith(_PROGRESS_PREFIX):
      message = 'progress: ' + message[len(_PROGRESS_PREFIX):]
    if record.levelno >= logging.WARNING:
      message = f'{record.levelname.lower()}: {message}'
    # A library's traceback (e.g. a background writer reporting the error
    # that `main` then states in one line) stays in the log file.
    if record.exc_info and _is_ours(record):
      message += '\n' + self.formatException(record.exc_info)
    return f'{self.formatTime(record, "%H:%M:%S")} {message}'


class _LazyFileHandler(logging.FileHandler):
  """Creates the file (and its directory) with the first record, so that a
  run stopped by a config error leaves no workdir behind."""

  _failed = False

  def _open(self):
    os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
    return super()._open()

  def handleError(self, record: logging.LogRecord) -> None:
    # A full disk or a vanished workdir: one console line, then the file is
    # left alone (logging would print a traceback for every record); the
    # run's own writes report the failure where it matters.
    if self._failed:
      return
    self._failed = True
    error = sys.exc_info()[1]
    sys.stderr.write(f'{time.strftime("%H:%M:%S")} warning: cannot write the '
                     f'log file {self.baseFilename} ({error}); it stops '
                     'here.\n')


def log_file_failed() -> bool:
  """Whether writing the log file failed (e.g. on a full disk)."""
  return any(isinstance(h, _LazyFileHandler) and h._failed  # pylint: disable=protected-access
             for h in logging.getLogger().handlers)


def setup_logging(log_file: Optional[str] = None) -> None:
  """Sets up the console and the log file of a command-line run.

  At the default `--verbosity=0` the console shows this project's messages,
  clu's progress line and errors, each as 'HH:MM:SS message'; everything
  (library INFO and WARNING records, Python warnings, every scalar) is
  appended to `log_file` in absl's full format when one is given. tfds's
  progress bars are shown only when stderr is a terminal.
  `--verbosity=1` or more shows it all on the console as well.

  Call it inside the `app.run` main function, or in a notebook after
  `absl.logging.set_verbosity('info')`.
  """
  absl_logging.use_absl_handler()  # Done by app.run; a notebook needs it.
  absl_handler = absl_logging.get_absl_handler()
  # TensorFlow's logger prints each record a second time through a handler
  # of its own ("WARNING:tensorflow:..."); let the root handlers decide.
  tf_logger = logging.getLogger('tensorflow')
  tf_logger.handlers.clear()
  tf_logger.propagate = True
  logging.captureWarnings(True)
  root = logging.getLogger()
  for handler in [h for h in root.handlers if isinstance(h, _LazyFileHandler)]:
    root.removeHandler(handler)  # Called again (a notebook cell rerun).
    handler.close()
  if log_file:
    file_handler = _LazyFileHandler(log_file, delay=True)
    file_handler.setFormatter(absl_logging.PythonFormatter())
    file_handler.setLevel(logging.INFO)
    root.addHandler(file_handler)
  # Unparsed flags: a notebook or a test, where absl's defaults hold.
  verbosity = flags.FLAGS.verbosity if flags.FLAGS.is_parsed() else 0
  if verbosity <= 0:
    if not any(isinstance(f, _ConsoleFilter) for f in absl_handler.filters):
      absl_handler.addFilter(_ConsoleFilter())
    absl_handler.setFormatter(_ConsoleFormatter())
  if not sys.stderr.isatty():
    # Progress bars redrawn into a file or a CI log are pages of fragments.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    tfds.disable_progress_bar()


def define_jit_cache_flag() -> None:
  """--jit_cache_dir: compiled steps are kept across runs (a minute of
  compiling on CPU saved by the second run of a config); JAX's own
  variable names another place."""
  flags.DEFINE_string(
      'jit_cache_dir', os.environ.get(
          'JAX_COMPILATION_CACHE_DIR',
          os.path.join(os.path.expanduser('~'), '.cache', 'airstreams_jax',
                       'jit')),
      "JAX's persistent compilation cache ('' turns it off).")


def use_jit_cache(directory: str) -> None:
  """Turns JAX's persistent compilation cache on in `directory` ('': off)."""
  if not directory:
    return
  import jax  # pylint: disable=g-import-not-at-top  # After cli.start.
  jax.config.update('jax_compilation_cache_dir', directory)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    # Every program, not only those over JAX's 1 s default: the dozens of
    # small ones (metrics, evaluation views, samples) took 45 of the smoke
    # run's 100 s with a warm cache.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


def start(tensorflow: bool = True) -> None:
  """The first lines of every command, before it imports anything else.

  Re-runs the process with huge pages where they help (`use_huge_pages`: the
  re-run replaces the process, so it comes before any import), then imports
  TensorFlow with its native start-up lines held back
  (`quiet_tensorflow_import`), so that they come neither first on the console
  nor in front of a one-line error.

  Args:
    tensorflow: False for a command that does not load TensorFlow (the
      launcher, model_info, ...): only TF_CPP_MIN_LOG_LEVEL is set, for the
      processes it starts.
  """
  use_huge_pages()
  if tensorflow:
    quiet_tensorflow_import()
  else:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def run(main: Callable[[], Any], define_flags: Callable[[], None], *,
        config_flag: str = '',
        console_logging: bool = True,
        log_file: Optional[Callable[[], Optional[str]]] = None,
        one_line_errors: Sequence[Type[BaseException]] = ()) -> None:
  """Runs `main` as the command: defines its flags, parses them, then runs it.

  Args:
    main: the command, without arguments (a positional argument on the
      command line is a usage error). What it returns is the exit status.
    define_flags: defines the command's flags in absl's FLAGS.
    config_flag: the name of a `config_flags.DEFINE_config_file` flag, whose
      mistakes (a misspelt `--config.<key>`, a config file that fails to
      load) end the command in one line (`flags_parser`).
    console_logging: set up the console and log-file logging
      (`setup_logging`) before `main` runs.
    log_file: gives the log file's path, once the flags are parsed.
    one_line_errors: exception types that end the command with
      'error: <the message in one line>' and exit status 1 instead of a
      traceback (e.g. `errors.ConfigError`).

  `--help` (`--helpshort`, `--helpfull`) prints the command's docstring and
  flags and exits with status 0.
  """
  define_flags()
  one_line_errors = tuple(one_line_errors)

  def command(argv: List[str]) -> Any:
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if console_logging:
      setup_logging(log_file() if log_file else None)
    try:
      return main()
    except one_line_errors as e:
      sys.exit(f'error: {one_line(e)}')

  parser = (flags_parser(flags.FLAGS[config_flag]) if config_flag
            else app.parse_flags_with_usage)
  app.run(command, flags_parser=_help_exits_with_0(parser))


# absl's help flags print the usage, then exit with status 1.
_HELP_PARSERS = tuple(c.parse.__code__ for c in (
    app.HelpFlag, app.HelpfullFlag, app.HelpXMLFlag))


def _help_exits_with_0(parser: Callable[[List[str]], Any]
                       ) -> Callable[[List[str]], Any]:
  """`parser`, where asking for help ends the process with status 0."""
  def parse(argv):
    try:
      return parser(argv)
    except SystemExit as e:
      frames = e.__traceback__
      while frames is not None:
        if frames.tb_frame.f_code in _HELP_PARSERS:
          sys.exit(0)
        frames = frames.tb_next
      raise
  return parse
