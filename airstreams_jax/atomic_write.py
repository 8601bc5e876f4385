"""Files replaced whole: written beside their path, then renamed onto it.

A process killed mid-write (a preemption, SIGKILL) leaves the previous
version or none, never a truncated file that a resumed run or a dependent
sweep unit would read. Works on any `gfile` path (local, gs://).
"""

from typing import Union

from tensorflow.io import gfile


def write_whole(path: str, content: Union[str, bytes]) -> None:
  """Writes `content` (text or bytes) to `path` all at once."""
  temporary = path + '.tmp'
  with gfile.GFile(temporary, 'wb' if isinstance(content, bytes) else 'w'
                   ) as f:
    f.write(content)
  gfile.rename(temporary, path, overwrite=True)
