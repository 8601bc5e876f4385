"""Errors that `main` reports as a single line instead of a traceback."""

import errno
import re


class ConfigError(ValueError):
  """The config or a flag asks for something that cannot work.

  Raised before any expensive work (dataset building, compilation); the
  message names the problem and the fix.
  """


_STORAGE_HINTS = {
    errno.ENOSPC: 'the disk is full; free space, then rerun the same command '
                  'to resume from the newest complete checkpoint',
    errno.EDQUOT: 'the disk quota is used up; free space, then rerun the same '
                  'command to resume from the newest complete checkpoint',
    errno.EACCES: 'not permitted; fix the permissions or choose another '
                  'directory',
    errno.EROFS: 'a read-only file system; choose another directory',
    errno.ENOENT: 'it is gone; was it moved or deleted while the run used '
                  'it? Restore it (or rebuild the dataset) and rerun',
}


def storage_cause(error: BaseException,
                  storage_types: tuple = (OSError,)) -> 'BaseException | None':
  """The read or write error behind `error`, if any: the error itself or one
  it was raised from. Background writers (clu's asynchronous summary writer,
  orbax's checkpoint thread) re-raise a failed write wrapped in their own
  error type."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, storage_types):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


def storage_error_line(error: BaseException) -> str:
  """One line for a failed read or write (an OSError, or TensorFlow's I/O
  errors, which carry no errno): what failed, on which path, and the fix."""
  if isinstance(error, OSError) and error.errno in _STORAGE_HINTS:
    where = error.filename or ''
    return (f'{where}: {error.strerror} ({_STORAGE_HINTS[error.errno]}).'
            if where else
            f'{error.strerror} ({_STORAGE_HINTS[error.errno]}).')
  text = str(getattr(error, 'message', None) or error)
  # TensorFlow's: '{{function_node ...}} PATH; REASON\n\tmore [Op:Name]'.
  text = re.sub(r'\{\{[^}]*\}\}\s*', '', text).strip().splitlines()[0]
  text = ' '.join(re.sub(r'\s*\[Op:.*$', '', text).split())
  lowered = text.lower()
  for code, marks in ((errno.ENOSPC, ('no space left',)),
                      (errno.EDQUOT, ('quota exceeded',)),
                      (errno.EROFS, ('read-only file system',)),
                      (errno.EACCES, ('permission denied',)),
                      (errno.ENOENT, ('no such file', 'not found'))):
    if any(mark in lowered for mark in marks):
      return f'{text} ({_STORAGE_HINTS[code]}).'
  return text
