"""Faults injected into real `main` runs: training killed with SIGKILL (mid
checkpoint write, which is also mid step, and mid evaluation) and rerun from
the same workdir ends with the weights of an uninterrupted run, and a
half-written checkpoint is never restored from; an unwritable workdir, a
full disk and a vanished data dir are one-line errors naming the path.

`python -m airstreams_jax.tools.fault_injection --kills=20` does the same at 20
random moments and prints how many resumed to identical weights.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess

import pytest

from airstreams_jax.tools import fault_injection as fi

# Every test here starts `main` subprocesses.
pytestmark = pytest.mark.slow


def test_killed_twice_preempted_then_resumed_gives_the_uninterrupted_weights(
    tmp_path, data_dir, smoke_main_run):
  """SIGKILL mid-checkpoint and mid-evaluation, then a preemption notice
  (SIGTERM): the step in flight ends, is saved, and the run leaves with
  status 0 and one line; the same command then resumes from that step to the
  weights of the run that was never interrupted. (One run, three
  interruptions: each `main` start costs a compile-cache load.)"""
  expected = smoke_main_run[2]['params_sha256']
  workdir = str(tmp_path / 'run')
  # Checkpoints every 2 steps, evaluations every 4, a console line per
  # step: none of it changes the weights, all of it can be killed.
  command = fi.main_command('configs/synthetic.py:smoke', workdir, data_dir,
                            fi.FAULT_OVERRIDES)

  # 1. While the asynchronous write of step 4's checkpoint is in flight (the
  # steps go on meanwhile).
  run = fi.run_main(command, workdir, fi.checkpoint_write_in_flight(4))
  assert run.killed and run.returncode == -9, run.console[-10:]
  assert 'checkpoint write' in run.phase
  cut = fi.half_written_steps(workdir)
  assert cut and min(cut) >= 4, cut

  # 2. During the evaluation at step 4; the restart resumed from a complete
  # checkpoint older than the half-written one, and removed that.
  run = fi.run_main(command, workdir, fi.console_line(r'Evaluating step 4'))
  assert run.killed, run.console[-10:]
  assert run.resumed_from is not None and run.resumed_from < min(cut)
  assert not any(' step 5/8: loss ' in line for line in run.console)
  assert not set(cut) & set(fi.half_written_steps(workdir))

  # 3. A preemption notice once step 5 is logged.
  run = fi.run_main(command, workdir, fi.console_line(r' step 5/8: loss '),
                    sig=signal.SIGTERM)
  assert run.killed and run.returncode == 0, run.console[-10:]
  match = re.fullmatch(r'preempted at step (\d+); saved; rerun the same '
                       r'command to resume', run.console[-1])
  assert match, run.console[-10:]
  step = int(match.group(1))
  # Past the step the notice followed, before the end; an odd step is one
  # the regular schedule (every 2) would not have saved.
  assert 5 <= step < 8, step
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(step)))
  assert not os.path.exists(os.path.join(workdir, 'eval_results.json'))

  # 4. Rerun to the end: the weights of the run that was never interrupted.
  run = fi.run_main(command, workdir)
  assert run.returncode == 0, run.console[-20:]
  assert run.resumed_from == step
  assert fi.final_sha(workdir) == expected
  assert fi.half_written_steps(workdir) == []
  assert not os.path.exists(os.path.join(workdir, 'eval_results.json.tmp'))


@contextlib.contextmanager
def _tmpfs(path, options: str):
  """`path` as a tmpfs of its own (root with mount rights; skips otherwise)."""
  proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs',
                         str(path)], capture_output=True, text=True,
                        check=False)
  if proc.returncode:
    pytest.skip(f'cannot mount a tmpfs: {proc.stderr.strip()}')
  try:
    yield str(path)
  finally:
    subprocess.run(['umount', str(path)], check=True)


@pytest.fixture
def read_only_directory(tmp_path):
  """A directory nobody can write into: a read-only tmpfs for root (which
  ignores permission bits), permission bits otherwise."""
  path = tmp_path / 'read_only'
  path.mkdir()
  if os.geteuid() != 0:
    path.chmod(0o555)
    yield str(path)
    path.chmod(0o755)
    return
  with _tmpfs(path, 'ro,size=1m') as directory:
    yield directory


@pytest.mark.parametrize('inside', ['', 'run'])
def test_an_unwritable_workdir_is_one_line(tmp_path, read_only_directory,
                                           inside):
  # Both the workdir itself and a new workdir inside a read-only directory.
  workdir = os.path.join(read_only_directory, inside)
  data_dir = str(tmp_path / 'never_built')
  proc = subprocess.run(
      fi.main_command('configs/synthetic.py:smoke', workdir, data_dir),
      cwd=fi.ROOT, capture_output=True, text=True, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip() == (
      f'error: --workdir={workdir}: {read_only_directory} is not writable '
      '(permissions or a read-only file system); choose a writable '
      'directory.')
  assert not os.path.exists(data_dir)  # Nothing was built.


@pytest.fixture
def small_disk(tmp_path):
  """A 64 MB file system of its own."""
  path = tmp_path / 'disk'
  path.mkdir()
  with _tmpfs(path, 'size=64m') as directory:
    yield directory


def _fill(directory: str) -> str:
  """Writes zeros into `directory` until its file system is full."""
  path = os.path.join(directory, 'filler')
  chunk = bytes(1 << 20)
  with open(path, 'wb') as f:
    try:
      while True:
        f.write(chunk)
        f.flush()
    except OSError:
      pass
  return path


def test_a_full_disk_stops_training_in_one_line_and_a_rerun_resumes(
    small_disk, data_dir, smoke_main_run):
  workdir = os.path.join(small_disk, 'run')
  command = fi.main_command('configs/synthetic.py:smoke', workdir, data_dir,
                            fi.FAULT_OVERRIDES)
  filled = []

  def fill_after_the_first_checkpoint(lines, seconds, workdir):
    del lines, seconds
    if not filled and os.path.isdir(os.path.join(workdir, 'checkpoints', '2')):
      filled.append(_fill(small_disk))
    return False  # Never kills: the run meets the full disk by itself.
  run = fi.run_main(command, workdir, fill_after_the_first_checkpoint)
  assert filled and run.returncode == 1, run.console[-10:]
  last = run.console[-1]
  assert last.startswith('error: ') and 'No space left on device' in last, (
      run.console[-10:])
  assert 'free space, then rerun the same command' in last
  # Every line is ours: progress, at most a warning about the log file, the
  # error; no traceback.
  assert all(line[:1].isdigit() or line.startswith('error: ')
             for line in run.console), run.console
  # The checkpoint that was complete is still the newest complete one.
  steps = sorted(int(name) for name in
                 os.listdir(os.path.join(workdir, 'checkpoints'))
                 if name.isdigit())
  assert steps == [2], os.listdir(os.path.join(workdir, 'checkpoints'))

  os.remove(filled[0])  # Space freed: the same command resumes ...
  run = fi.run_main(command, workdir)
  assert run.returncode == 0, run.console[-20:]
  assert run.resumed_from == 2
  # ... to the weights of a run that never met a full disk.
  assert fi.final_sha(workdir) == smoke_main_run[2]['params_sha256']
  assert fi.half_written_steps(workdir) == []


def test_a_data_dir_that_vanishes_mid_run_is_one_line_naming_it(
    tmp_path, data_dir):
  # A copy of the session's built dataset, which this test deletes.
  own_data = str(tmp_path / 'data')
  shutil.copytree(data_dir, own_data)
  workdir = str(tmp_path / 'run')
  command = fi.main_command('configs/synthetic.py:smoke', workdir, own_data,
                            fi.FAULT_OVERRIDES)

  def delete_once_training_runs(lines, seconds, workdir):
    del seconds, workdir
    if os.path.exists(own_data) and any(' step 2/8: loss ' in line
                                        for line in lines):
      shutil.rmtree(own_data)
    return False
  run = fi.run_main(command, workdir, delete_once_training_runs)
  assert run.returncode == 1, run.console[-10:]
  last = run.console[-1]
  assert last.startswith('error: ') and own_data in last, run.console[-10:]
  assert 'was it moved or deleted while the run used it?' in last
  assert all(line[:1].isdigit() or line.startswith('error: ')
             for line in run.console), run.console
