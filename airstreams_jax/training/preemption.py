"""Stopping for a preemption: every process saves the same step, then leaves.

Spot and preemptible machines (Cloud TPU VMs, SLURM's preemptible
partitions, Kubernetes) get SIGTERM shortly before they go. In a
multi-process run JAX's preemption service catches it (on any one process)
and `reached_preemption_sync_point(step)` turns true on every process at the
same step, as big_vision uses it; the service also hears Cloud TPU's own
maintenance notices. A run of one process has no such service, so SIGTERM is
caught here and the next step is the one to save.
"""

import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Training stopped for a preemption after saving `step`."""

  def __init__(self, step: int):
    super().__init__(f'preempted at step {step}; saved; rerun the same '
                     'command to resume')
    self.step = step


class PreemptionWatch:
  """`with PreemptionWatch() as watch:`; `watch.reached(step)` after every
  step says whether to save that step and stop.

  Enter it before the long start-up (dataset, compiling): a SIGTERM then
  stops the run at its first step instead of killing it.
  """

  def __init__(self):
    self._signalled = threading.Event()
    self._previous = None
    self._installed = False

  def __enter__(self) -> 'PreemptionWatch':
    # JAX's service has its own SIGTERM handler in a multi-process run; a
    # Python one would replace it, and the other processes never hear.
    if jax.process_count() > 1:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._installed = True
    except ValueError:  # Not the main thread (a notebook's worker thread).
      logging.info('SIGTERM not watched: training runs outside the main '
                   'thread; a preemption kills it.')
    return self

  def __exit__(self, *unused_exc) -> None:
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)
      self._installed = False

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    # Only a flag: the step in flight finishes, then the loop saves.
    self._signalled.set()

  def reached(self, step: int) -> bool:
    """True at the step to save and stop at (the same on every process).

    Multi-process: to be called at every step by every process (JAX's
    protocol picks the step after the latest any process has reported).
    """
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled.is_set()

