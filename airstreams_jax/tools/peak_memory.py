"""A process's peak resident memory, for the benchmark and its PyTorch
worker (which must not import the benchmark's libraries)."""

import contextlib
from typing import Optional


class PeakMemory:
  """The process's peak resident memory since `reset()` (Linux: VmHWM,
  reset through /proc/self/clear_refs); None where that is unavailable."""

  def reset(self) -> None:
    with contextlib.suppress(OSError):
      with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')

  def mb(self) -> Optional[float]:
    with contextlib.suppress(OSError):
      with open('/proc/self/status') as f:
        for line in f:
          if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return None
