"""Factories for tests/test_benchmark.py's checks of airstreams_jax.tools.torch_worker:
plain Python, so they run without PyTorch. Imported in the worker's child."""

import os
import sys


def appender(path):
  """'append' writes the child's pid as a line of `path` at each call."""
  def append():
    with open(path, 'a') as f:
      f.write(f'{os.getpid()}\n')
  heavy = [m for m in ('jax', 'tensorflow', 'torch') if m in sys.modules]
  return {'append': append}, {'pid': os.getpid(), 'heavy_modules': heavy}


def failing(message):
  raise ValueError(message)


def dying(code):
  return {'die': lambda: os._exit(code)}, {}  # pylint: disable=protected-access


def allocator(megabytes):
  """Touches `megabytes` MB while building, then frees them: the build's
  peak memory is at least that."""
  block = bytearray(megabytes << 20)
  block[::4096] = b'\1' * len(block[::4096])
  del block
  return {}, {}


def sleeper(seconds):
  """'sleep' keeps the child busy for `seconds`."""
  import time  # pylint: disable=g-import-not-at-top
  return {'sleep': lambda: time.sleep(seconds)}, {}
