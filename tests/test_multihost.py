"""Two processes on 127.0.0.1 train exactly like one with the same batch."""

import glob
import json
import os
import re
import signal
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
from tests import simulated_clusters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every test here starts `main` subprocesses.
pytestmark = pytest.mark.slow
# The tests that share the module's reference runs: one unit of work, so
# that one worker trains each reference once (conftest._scope).
_SHARED = pytest.mark.xdist_group('multihost_reference_runs')


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


def _launch(workdir, devices, data_dir, extra=(), env=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             **(env or {}))
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


@pytest.fixture(scope='module')
def one_process_run(tmp_path_factory, data_dir):
  """The one-process reference (8 devices) that the two-process runs of
  this module are compared with; trained once.

  Returns:
    Its workdir (read, never changed).
  """
  workdir = str(tmp_path_factory.mktemp('one_process') / 'run')
  reference = _launch(workdir, 8, data_dir)
  try:
    lines, reader = _read_stderr(reference)
    reference.wait(timeout=1200)
    reader.join(timeout=10)
    assert reference.returncode == 0, _failure(reference, lines)
  finally:
    _end([reference])
  return workdir


def _wait_all(procs, readers) -> None:
  """Waits for every process to end; fails naming the first that failed."""
  for proc, (lines, reader) in zip(procs, readers):
    proc.wait(timeout=1200)
    reader.join(timeout=10)
    failure = _failure(proc, lines)
    assert failure is None, failure


def _assert_same_training(one: str, two: str) -> None:
  """The two-process run in `two` trained as the one-process run in `one`."""
  losses_one, losses_two = _train_losses(one), _train_losses(two)
  assert sorted(losses_one) == sorted(losses_two) == [1, 2, 3]
  np.testing.assert_allclose([losses_two[s] for s in (1, 2, 3)],
                             [losses_one[s] for s in (1, 2, 3)], rtol=1e-5)
  assert os.path.isdir(os.path.join(two, 'checkpoints', '3'))


def _slurm_pair(workdir, data_dir, port, extra=()):
  """Two tasks of a simulated SLURM job (the variables srun sets, which
  JAX's SlurmCluster reads) and no process flags."""
  procs = []
  for i in range(2):
    env = simulated_clusters.slurm_environment(4242, i, 2, '127.0.0.1')
    # The coordinator's port, which SLURM derives from the job id, on a
    # port known to be free here (JAX's own override).
    env['JAX_COORDINATOR_PORT'] = str(port)
    procs.append(_launch(workdir, 4, data_dir, extra, env=env))
  return procs


@pytest.fixture(scope='module')
def slurm_run(tmp_path_factory, data_dir):
  """An uninterrupted run of two simulated SLURM tasks that reach their
  first collective 45 s apart.

  Task 0 finds another run building the dataset (the fixture holds the build
  lock) while task 1 waits for the dataset: the lock is freed 45 s after
  task 1 has logged its devices, more than the 30 s in which the CPU
  collectives (gloo) expect a peer. Under load, compiling at different
  paces did the same and made the run fail and abort (SIGABRT) at times.
  (The process flags, `--coordinator_address/--num_processes/--process_id`,
  form the pairs of the dying-process tests below.)

  Returns:
    (workdir, the port, each process's stderr lines).
  """
  config = synthetic_config.get_config('smoke')
  config.dataset.data_dir = data_dir
  workdir = str(tmp_path_factory.mktemp('slurm') / 'run')
  port = _free_port()
  procs = []
  try:
    with dataset_from_config.build_lock(
        dataset_from_config.make_builder(config.dataset).data_dir):
      procs = _slurm_pair(workdir, data_dir, port)
      readers = [_read_stderr(proc) for proc in procs]
      # Task 1 logs its devices just before it waits for the dataset.
      _wait_for_line(procs[1], readers[1][0], 'JAX devices: ')
      time.sleep(45)
    _wait_all(procs, readers)
  finally:
    _end(procs)
  return workdir, port, [lines for lines, _ in readers]


def _eval_results(workdir: str) -> dict:
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    return json.load(f)


@_SHARED
def test_two_slurm_tasks_without_flags_form_one_run(slurm_run,
                                                    one_process_run):
  """Each task finds its place, they train together, and as one process
  does."""
  double, port, lines = slurm_run
  for i in range(2):
    assert any(line.endswith(f'SLURM: process {i} of 2, coordinator '
                             f'127.0.0.1:{port}') for line in lines[i]), (
                                 lines[i])
  _assert_same_training(one_process_run, double)
  one, two = _eval_results(one_process_run), _eval_results(double)
  # Process 1 wrote its own log file: the detected id named it.
  assert os.path.exists(os.path.join(double, 'main.process1.log'))
  assert two['step'] == one['step'] == 3
  for key, value in one.items():
    if isinstance(value, float):
      assert two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@_SHARED
def test_sigterm_to_one_task_stops_both_at_one_saved_step_then_resumes(
    tmp_path, data_dir, slurm_run):
  """A preemption notice to process 1 only: JAX's preemption service tells
  process 0, both save the same step and exit 0 with one line; rerun, they
  end with the weights of the uninterrupted pair."""
  workdir = str(tmp_path / 'run')
  procs = []
  try:
    procs = _slurm_pair(workdir, data_dir, _free_port())
    readers = [_read_stderr(proc) for proc in procs]
    _wait_for_line(procs[1], readers[1][0], 'step 1/3: loss ')
    procs[1].send_signal(signal.SIGTERM)
    _wait_all(procs, readers)
  finally:
    _end(procs)
  lasts = [lines[-1] for lines, _ in readers]
  steps = {int(re.fullmatch(r'preempted at step (\d+); saved; rerun the '
                            r'same command to resume', last).group(1))
           if re.fullmatch(r'preempted at step \d+; .*', last) else None
           for last in lasts}
  assert len(steps) == 1 and None not in steps, lasts
  step = steps.pop()
  assert 2 <= step <= 3, step
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(step)))
  assert not os.path.exists(os.path.join(workdir, 'eval_results.json'))
  try:
    procs = _slurm_pair(workdir, data_dir, _free_port())
    readers = [_read_stderr(proc) for proc in procs]
    _wait_all(procs, readers)
  finally:
    _end(procs)
  assert any(f'Resumed from the checkpoint of step {step}' in line
             for line in readers[0][0]), readers[0][0][-20:]
  assert (_eval_results(workdir)['params_sha256'] ==
          _eval_results(slurm_run[0])['params_sha256'])


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
