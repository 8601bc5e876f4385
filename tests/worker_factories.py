"""Factories for tests/test_benchmark.py's checks of experiments.torch_worker:
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
