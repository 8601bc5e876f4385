"""Two processes on 127.0.0.1 train exactly like one with the same batch."""

import glob
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from airstreams_jax.data import dataset_from_config
from configs import synthetic as synthetic_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every test here starts `main` subprocesses.
pytestmark = pytest.mark.slow


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _train_losses(workdir: str) -> dict:
  """train/loss per step from the TensorBoard events that process 0 wrote."""
  losses = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'train/loss':
          losses[event.step] = float(tf.make_ndarray(value.tensor))
  return losses


def _launch(workdir, devices, data_dir, extra=()):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return subprocess.Popen(
      [sys.executable, '-m', 'airstreams_jax.main',
       '--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
       f'--config.dataset.data_dir={data_dir}',
       '--config.num_train_steps=3', '--config.log_every_steps=1',
       '--config.eval_every_steps=3', '--config.checkpoint_every_steps=3',
       # SGD is linear in the gradient, so float rounding stays small; Adam
       # would blow up rounding differences in near-zero gradients.
       '--config.optimizer.name=sgd',
       # The RGB stream alone: what is tested is how processes share the
       # work, and a smaller model compiles three times faster.
       "--config.model.streams=('rgb',)", *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def _read_stderr(proc):
  """(a list that a thread fills with the process's stderr lines, the
  thread)."""
  lines = []
  reader = threading.Thread(
      target=lambda: lines.extend(l.rstrip() for l in proc.stderr),
      daemon=True)
  reader.start()
  return lines, reader


def _wait_for_line(proc, lines, pattern: str, seconds: float = 600) -> None:
  """Waits until the process has logged a console line matching `pattern`
  (after its 'HH:MM:SS ' time stamp); fails if it exits or time runs out."""
  found = re.compile(r'^\d\d:\d\d:\d\d ' + pattern)
  deadline = time.monotonic() + seconds
  while not any(found.match(line) for line in lines):
    assert proc.poll() is None and time.monotonic() < deadline, lines[-30:]
    time.sleep(0.05)


def _end(procs) -> None:
  """Kills and reaps whichever of the processes still run, and closes their
  stdout (never read; stderr belongs to its reader thread)."""
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
    proc.stdout.close()


def _failure(proc, lines):
  """None if the process succeeded, else (returncode, its informative stderr
  lines)."""
  if not proc.returncode:
    return None
  informative = [line for line in lines
                 if 'Error' in line or 'error:' in line or 'Traceback' in line]
  return proc.returncode, '\n'.join(informative[:20] + lines[-30:])


def test_two_processes_match_one_process(tmp_path, data_dir):
  # Process 0 finds another run building the dataset (the test holds the
  # build lock) while process 1 waits for the dataset: the lock is freed 45 s
  # after process 1 has started, so that they reach their first collective at
  # least 45 s apart, more than the 30 s in which the CPU collectives (gloo)
  # expect a peer. Under load, compiling at different paces did the same and
  # made the run fail and abort (SIGABRT) at times.
  config = synthetic_config.get_config('smoke')
  config.dataset.data_dir = data_dir
  # The one-process reference trains during those 45 s: the lock is taken
  # once it has passed its own dataset check, and kept until it has
  # finished, so that it never compiles while the two processes do.
  single = str(tmp_path / 'one_process')
  double = str(tmp_path / 'two_processes')
  address = f'127.0.0.1:{_free_port()}'
  reference = _launch(single, 8, data_dir)
  procs = [reference]
  try:
    reference_lines, reference_reader = _read_stderr(reference)
    # Its log line once the dataset is there (and the lock about to be
    # freed).
    _wait_for_line(reference, reference_lines, '(Dataset|Built) ')
    with dataset_from_config.build_lock(dataset_from_config.make_builder(config.dataset).data_dir):
      pair = [_launch(double, 4, data_dir,
                      [f'--coordinator_address={address}',
                       '--num_processes=2', f'--process_id={i}'])
              for i in range(2)]
      procs += pair
      pair_lines = [_read_stderr(proc) for proc in pair]
      # Process 1 logs its devices just before it waits for the dataset.
      _wait_for_line(pair[1], pair_lines[1][0], 'JAX devices: ')
      waiting_since = time.monotonic()
      reference.wait(timeout=1200)
      reference_reader.join(timeout=10)
      assert reference.returncode == 0, _failure(reference, reference_lines)
      time.sleep(max(0., 45 - (time.monotonic() - waiting_since)))
    for proc, (lines, reader) in zip(pair, pair_lines):
      proc.wait(timeout=1200)
      reader.join(timeout=10)
      failure = _failure(proc, lines)
      assert failure is None, failure
  finally:
    _end(procs)

  one, two = _train_losses(single), _train_losses(double)
  assert sorted(one) == sorted(two) == [1, 2, 3]
  np.testing.assert_allclose([two[s] for s in (1, 2, 3)],
                             [one[s] for s in (1, 2, 3)], rtol=1e-5)
  assert os.path.exists(os.path.join(double, 'eval_results.json'))
  assert os.path.isdir(os.path.join(double, 'checkpoints', '3'))


def _kill_at_step_3(tmp_path, data_dir, victim: int):
  """Two processes train; `victim` is killed once step 3 is logged.

  Returns:
    (the survivor's return code, seconds it lived after the kill, its stderr
    lines).
  """
  workdir = str(tmp_path / 'run')
  address = f'127.0.0.1:{_free_port()}'
  procs = [_launch(workdir, 4, data_dir,
                   [f'--coordinator_address={address}', '--num_processes=2',
                    f'--process_id={i}', '--config.num_train_steps=400',
                    '--config.eval_every_steps=400',
                    '--config.checkpoint_every_steps=400'])
           for i in range(2)]
  survivor = procs[1 - victim]
  try:
    lines, reader = _read_stderr(survivor)
    _wait_for_line(survivor, lines, 'step 3/400: loss ')
    procs[victim].kill()  # Dies in the middle of training.
    killed_at = time.monotonic()
    survivor.wait(timeout=300)
    waited = time.monotonic() - killed_at
    reader.join(timeout=10)
  finally:
    _end(procs)
  return survivor.returncode, waited, lines


def test_a_process_that_dies_stops_the_other_at_once_in_one_line(tmp_path,
                                                                 data_dir):
  returncode, waited, lines = _kill_at_step_3(tmp_path, data_dir, victim=1)
  # Process 0 stops at its next collective with the dead one, not after the
  # 100 s heartbeat timeout and an abort.
  assert returncode == 1, lines[-20:]
  assert waited < 30, waited
  assert lines[-1].startswith('error: process 0 of 2: a collective failed ('
                              ), lines[-20:]
  assert 'Restart every process' in lines[-1]
  assert not [line for line in lines if line.startswith(('F', 'E', '***'))
              and not line.startswith('error: ')], lines[-20:]


def test_when_process_0_dies_the_others_stop_within_seconds(tmp_path,
                                                            data_dir):
  """Process 0 hosts the coordination service: when it dies, XLA's
  coordination agent ends the others at once with its own fatal message
  (SIGABRT), before their next collective could fail in our one line;
  jax.distributed.initialize has no hook for it. Bounded, not a hang."""
  returncode, waited, lines = _kill_at_step_3(tmp_path, data_dir, victim=0)
  assert returncode != 0 and waited < 30, (waited, lines[-20:])
  assert any('another task died' in line for line in lines), lines[-40:]
