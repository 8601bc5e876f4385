"""Paths a user gives (workdir, data_dir, manual_dir, teacher weights) may be
remote: gs://, s3://, or TensorFlow's ram:// in tests. Everything that reads
or writes them goes through `tensorflow.io.gfile`; these are the few things
gfile does not say directly.

TensorFlow is imported only when a remote path is met: the teachers and the
video decoder run in spawned worker processes that a local build keeps free
of it (seconds and hundreds of MB per worker).
"""

import hashlib
import io
import os
import tempfile
from typing import Optional


def is_remote(path: str) -> bool:
  """gs://bucket/x and the like: not a path of this machine's file system."""
  return '://' in os.fspath(path)


def absolute(path: str) -> str:
  """`~` expanded and made absolute for a local path; a remote one as is
  (os.path.abspath would turn gs://b/x into <cwd>/gs:/b/x)."""
  path = os.fspath(path)
  if is_remote(path):
    return path
  return os.path.abspath(os.path.expanduser(path))


def _gfile():
  from tensorflow.io import gfile  # pylint: disable=g-import-not-at-top
  return gfile


def is_file(path: str) -> bool:
  """os.path.isfile for any path."""
  if not is_remote(path):
    return os.path.isfile(path)
  gfile = _gfile()
  return gfile.exists(path) and not gfile.isdir(path)


def open_text(path: str, newline: Optional[str] = None) -> io.StringIO:
  """The text of a UTF-8 file (a byte-order mark dropped, as Excel writes
  one), to read as `open(path, encoding='utf-8-sig', newline=newline)`
  would; gfile's text mode keeps the mark and has no `newline`."""
  with _gfile().GFile(path, 'rb') as f:
    return io.StringIO(f.read().decode('utf-8-sig'), newline=newline)


def local_file(path: str) -> str:
  """A local path with the content of `path`: itself when local; a remote
  file is copied once into the temporary directory (named by its path, size
  and time, so that a replaced file is copied again), for the libraries that
  read only local files (LiteRT, torch, numpy's zip)."""
  if not is_remote(path):
    return path
  stat = _gfile().stat(path)
  name = hashlib.sha256(f'{path} {stat.length} {stat.mtime_nsec}'.encode()
                        ).hexdigest()[:16]
  local = os.path.join(tempfile.gettempdir(), 'airstreams_jax_remote',
                       name + '_' + os.path.basename(path))
  if not os.path.exists(local):
    os.makedirs(os.path.dirname(local), exist_ok=True)
    # Written beside, then renamed: parallel workers may copy it at once.
    partial = f'{local}.{os.getpid()}.tmp'
    _gfile().copy(path, partial, overwrite=True)
    os.replace(partial, local)
  return local
