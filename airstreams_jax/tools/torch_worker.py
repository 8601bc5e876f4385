"""PyTorch's side of the benchmark, in a process of its own.

With the twin loaded in the benchmark's process, our JAX train step ran
25-30% slower than without it (docs/performance_log.md), for a reason not found
(not thread affinity, not OpenMP's spin-waiting). So that each side runs as it
would alone, `airstreams_jax.tools.benchmark` keeps PyTorch out of its own process:
a `TorchWorker` is a child process (a fresh interpreter running this module:
neither the parent's JAX state nor its imports of TensorFlow and JAX are in
it) that builds PyTorch callables on request and runs them when told. Only
one side works at a time, so alternating rounds still see the same machine
load:

  with TorchWorker() as worker:
    info, names = worker.build('airstreams_jax.tools.torch_twin:model_callables',
                               config, num_classes, num_seg_classes, batch,
                               loss_weights)
    fns = {'jax': ours, 'torch': worker.callable('train')}
    benchmark.alternate(fns, rounds)   # the parent times both sides

A call's time is measured in the parent around the round trip; a pipe
message costs tens of microseconds, against steps of 50 ms to seconds.
This module itself never imports torch.
"""

import gc
import importlib
from multiprocessing import connection
import os
import signal
import subprocess
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

from airstreams_jax.tools.peak_memory import PeakMemory


def _resolve(factory: str) -> Callable[..., Any]:
  module, _, name = factory.partition(':')
  return getattr(importlib.import_module(module), name)


def _serve(receive, send) -> None:
  """The child's loop: ('build', factory, args), ('run', name, calls),
  ('release',), ('peak_rss_mb',) or ('stop',); answers ('ok', value) or
  ('error', text)."""
  callables: Dict[str, Callable[[], Any]] = {}
  memory = PeakMemory()
  while True:
    try:
      message = receive.recv()
    except EOFError:  # The parent went away.
      return
    except Exception:  # pylint: disable=broad-except
      # A message that does not unpickle here (e.g. a class the child
      # cannot import): the parent gets the reason, the loop goes on.
      send.send(('error', traceback.format_exc()))
      continue
    kind = message[0]
    if kind == 'stop':
      send.send(('ok', None))
      return
    try:
      if kind == 'release':
        callables.clear()
        gc.collect()
        reply = None
      elif kind == 'build':
        _, factory, args = message
        memory.reset()
        fns, info = _resolve(factory)(*args)
        callables.update(fns)
        reply = (info, sorted(fns))
      elif kind == 'run':
        _, name, calls = message
        for _ in range(calls):
          callables[name]()
        reply = None
      elif kind == 'peak_rss_mb':
        reply = memory.mb()
      else:
        raise ValueError(f'unknown request {kind!r}')
      send.send(('ok', reply))
    except Exception:  # pylint: disable=broad-except
      # The parent re-raises it with the child's traceback.
      send.send(('error', traceback.format_exc()))


class TorchWorkerError(RuntimeError):
  """A request failed in the worker; the message holds its traceback."""


class TorchWorker:
  """A spawned child process that builds and runs PyTorch callables."""

  def __init__(self):
    # Not multiprocessing's spawn: it would import the parent's main module
    # (the benchmark, with TensorFlow and JAX) into the child. Two pipes
    # carry pickled messages, as multiprocessing's own connections.
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    # The child imports factories by module name, from the parent's path.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p or os.getcwd() for p in sys.path))
    try:
      self._process = subprocess.Popen(
          [sys.executable, '-m', 'airstreams_jax.tools.torch_worker', str(to_child_r),
           str(from_child_w)], pass_fds=(to_child_r, from_child_w), env=env)
    except BaseException:
      for fd in (to_child_w, from_child_r):
        os.close(fd)
      raise
    finally:
      os.close(to_child_r)
      os.close(from_child_w)
    self._send = connection.Connection(to_child_w, readable=False)
    self._recv = connection.Connection(from_child_r, writable=False)

  def _request(self, *message) -> Any:
    try:
      self._send.send(message)
      status, value = self._recv.recv()
    except (EOFError, BrokenPipeError) as e:
      try:
        code = self._process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        code = None
      raise TorchWorkerError(
          f'the PyTorch worker died (exit code {code}) during '
          f'{message[0]!r}') from e
    if status == 'error':
      raise TorchWorkerError(f'in the PyTorch worker:\n{value}')
    return value

  def build(self, factory: str, *args) -> Tuple[Any, List[str]]:
    """Calls `module:function(*args)` in the child, which returns (a dict of
    name -> no-argument callable, info); keeps the callables there and
    returns (info, their names). Arguments and info must pickle."""
    return self._request('build', factory, args)

  def run(self, name: str, calls: int = 1) -> None:
    self._request('run', name, calls)

  def release(self) -> None:
    """Drops every callable built so far (and what they hold: models,
    optimiser state), so that the next build's peak memory is its own."""
    self._request('release')

  def callable(self, name: str) -> Callable[[], None]:
    """A no-argument function that runs `name` once in the child and
    returns when it is done (what `benchmark.alternate` times)."""
    return lambda: self.run(name)

  def peak_rss_mb(self) -> Optional[float]:
    """The child's peak resident memory since the latest `build` (Linux
    VmHWM; None elsewhere)."""
    return self._request('peak_rss_mb')

  def close(self, timeout_s: float = 30) -> None:
    """Asks the child to stop; kills it if it has not within `timeout_s`
    (e.g. still inside a long call after the parent was interrupted)."""
    if self._process.poll() is None:
      try:
        self._send.send(('stop',))
        if self._recv.poll(timeout_s):
          self._recv.recv()
      except (EOFError, OSError):
        pass
      try:
        self._process.wait(timeout=timeout_s)
      except subprocess.TimeoutExpired:
        self._process.kill()
        self._process.wait()
    self._send.close()
    self._recv.close()

  def __enter__(self) -> 'TorchWorker':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


if __name__ == '__main__':
  # The child: python -m airstreams_jax.tools.torch_worker READ_FD WRITE_FD. Ctrl-C
  # reaches the whole process group: the parent handles it and stops this
  # process (`close`), which would otherwise die with a second traceback.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  _serve(connection.Connection(int(sys.argv[1]), writable=False),
         connection.Connection(int(sys.argv[2]), readable=False))
