r"""Training killed with SIGKILL at random moments resumes to the same weights.

  .venv/bin/python -m airstreams_jax.tools.fault_injection --kills=20 \
      [--root=workdirs/fault_injection] [--seed=0] [--data_dir=DIR] \
      [--signal=KILL|TERM]

`--signal=TERM` sends the preemption notice instead: each run must save the
step it reached, exit 0 with "preempted at step N; saved; ..." and resume to
the same weights.

First an uninterrupted run of the smoke config records its `params_sha256`.
Then, for each of `--kills` trials, a fresh run of the same config is killed
with SIGKILL (no clean-up, as a preemption or the OOM killer does) at a
random moment: a random point of the run's progress (its "Training steps"
line, one of the 8 steps' loss lines, or one of the 2 evaluations' lines),
plus a random delay of up to 2 s, which lands in steps, in the asynchronous
checkpoint writes (every 2 steps here), in evaluations (every 4) and in the
final results. Moments are tied to progress, not to the wall clock, so a
loaded machine does not push every kill into start-up. Then the same
command is rerun until it finishes. The table shows where each kill landed,
which checkpoint the rerun resumed from, and whether the final weights are
bit-identical to the reference. The figure, "k of N identical", is what the
README quotes.

The helpers (`run_main` and the kill conditions) are what
tests/test_fault_injection.py uses to place kills at chosen moments.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start(tensorflow=False)

import dataclasses
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from absl import flags

from airstreams_jax import cli

# The repository root: main runs there (its config paths are relative to it).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp-<n>` and renames
# it to `<step>` once complete.
_TMP_MARK = '.orbax-checkpoint-tmp'
# Smoke settings that put many checkpoint writes and evaluations in the
# killable span; none of them changes the trained weights.
# Where a trial's kill is anchored (console lines of the smoke run), and the
# longest random delay after it.
MARKERS = ((r'Training steps',) + tuple(rf' step {k}/8: loss ' for k in
                                        range(1, 9)) +
           (r'Evaluating step 4', r'Evaluating step 8'))
MARKER_NAMES = dict(zip(MARKERS, ['start'] + [f'step {k}' for k in
                                              range(1, 9)] +
                        ['eval 4', 'eval 8']))
MAX_DELAY_S = 2.0
FAULT_OVERRIDES = ('--config.checkpoint_every_steps=2',
                   '--config.eval_every_steps=4',
                   '--config.log_every_steps=1')


@dataclasses.dataclass
class Run:
  """One `airstreams_jax.main` process and how it ended."""
  returncode: int
  killed: bool
  console: List[str]  # stderr lines: our progress and errors.
  stdout: str
  phase: str = ''  # Where a kill landed.

  @property
  def resumed_from(self) -> Optional[int]:
    for line in self.console:
      match = re.search(r'Resumed from the checkpoint of step (\d+)', line)
      if match:
        return int(match.group(1))
    return None


# A kill condition looks at the console lines so far, the seconds since the
# process started, and the workdir; True kills the process at once.
KillWhen = Callable[[Sequence[str], float, str], bool]


def checkpoint_write_in_flight(min_step: int = 0) -> KillWhen:
  """While a checkpoint of step >= min_step is half-written."""
  def when(lines, seconds, workdir):
    del lines, seconds
    return any(step >= min_step for step in half_written_steps(workdir))
  return when


def console_line(pattern: str, delay: float = 0.0) -> KillWhen:
  """`delay` seconds after a console line matching `pattern` appears."""
  seen_at = []

  def when(lines, seconds, workdir):
    del workdir
    if not seen_at and any(re.search(pattern, line) for line in lines):
      seen_at.append(seconds)
    return bool(seen_at) and seconds - seen_at[0] >= delay
  return when


def file_written(name: str) -> KillWhen:
  """As soon as `name` exists in the workdir."""
  def when(lines, seconds, workdir):
    del lines, seconds
    return os.path.exists(os.path.join(workdir, name))
  return when


def half_written_steps(workdir: str) -> List[int]:
  """Steps whose checkpoint directory is still a temporary one."""
  directory = os.path.join(workdir, 'checkpoints')
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return []
  return sorted(int(name.split('.')[0]) for name in names
                if _TMP_MARK in name and name.split('.')[0].isdigit())


def main_command(config: str, workdir: str, data_dir: str,
                 extra: Sequence[str] = ()) -> List[str]:
  args = [sys.executable, '-m', 'airstreams_jax.main', f'--config={config}',
          f'--workdir={workdir}']
  if data_dir:
    args.append(f'--config.dataset.data_dir={data_dir}')
  return args + list(extra)


def _read_lines(stream, into: 'queue.Queue[Optional[str]]') -> None:
  for line in stream:
    into.put(line.rstrip('\n'))
  into.put(None)


def run_main(command: Sequence[str], workdir: str,
             kill_when: Optional[KillWhen] = None,
             timeout: float = 900.0,
             env: Optional[Dict[str, str]] = None,
             sig: int = signal.SIGKILL) -> Run:
  """Runs `command` (a `main` invocation on `workdir`) to its end, or sends
  it `sig` (SIGKILL: no clean-up; SIGTERM: a preemption notice) as soon as
  `kill_when` holds (checked every 5 ms and on every console line). `env` is
  added to this process's environment."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **(env or {}))
  start = time.monotonic()
  proc = subprocess.Popen(list(command), cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  lines: 'queue.Queue[Optional[str]]' = queue.Queue()
  stdout: List[str] = []
  threading.Thread(target=_read_lines, args=(proc.stderr, lines),
                   daemon=True).start()
  stdout_reader = threading.Thread(
      target=lambda: stdout.append(proc.stdout.read()), daemon=True)
  stdout_reader.start()
  console: List[str] = []
  killed, open_stream = False, True
  lines_at_signal = 0
  try:
    while proc.poll() is None or open_stream:
      try:
        line = lines.get(timeout=0.005)
        if line is None:
          open_stream = False
        else:
          console.append(line)
      except queue.Empty:
        pass
      elapsed = time.monotonic() - start
      if elapsed > timeout:
        raise TimeoutError(f'{" ".join(command)} ran over {timeout:.0f} s')
      if (kill_when is not None and not killed and proc.poll() is None and
          kill_when(console, elapsed, workdir)):
        os.kill(proc.pid, sig)
        killed, lines_at_signal = True, len(console)
      if not open_stream and proc.poll() is not None:
        break
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
  stdout_reader.join(timeout=10)
  run = Run(proc.returncode, killed, console, ''.join(stdout))
  if killed:
    # SIGKILL ends the process where it was: every line read was written
    # before it. After SIGTERM the run goes on to the step it saves, so
    # where the notice landed is what the console said when it was sent.
    run.phase = phase_of(
        run.console if sig == signal.SIGKILL else console[:lines_at_signal],
        workdir)
  return run


def phase_of(console: Sequence[str], workdir: str) -> str:
  """Where a killed run was: what its console last said, and whether a
  checkpoint was half-written."""
  said = [line for line in console if ' progress: ' not in line]
  last = said[-1] if said else ''
  if not any('Training steps' in line for line in console):
    phase = 'start-up (restore, compile)'
  elif 'Evaluating' in last:
    phase = 'evaluation'
  elif re.search(r'step \d+/\d+: loss', last) or 'Training steps' in last:
    phase = 'training step'
  else:
    phase = 'after training (final evaluation, results)'
  if half_written_steps(workdir):
    phase += ' + checkpoint write'
  return phase


def final_sha(workdir: str) -> str:
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    return json.load(f)['params_sha256']


def run_trial(command: Sequence[str], workdir: str, kill_when: KillWhen,
              max_reruns: int = 3, sig: int = signal.SIGKILL) -> List[Run]:
  """A run sent `sig` when `kill_when` holds, then reruns until one
  finishes. A run that SIGTERM preempted exits 0 without results: it is
  rerun too."""
  runs = [run_main(command, workdir, kill_when, sig=sig)]
  while runs[-1].returncode != 0 or not os.path.exists(
      os.path.join(workdir, 'eval_results.json')):
    if len(runs) > max_reruns:
      raise RuntimeError(f'{workdir}: no rerun finished:\n' +
                         '\n'.join(runs[-1].console[-20:]))
    runs.append(run_main(command, workdir))
  return runs


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_integer('kills', 20, 'Killed runs (each then resumed).')
  flags.DEFINE_string('root', 'workdirs/fault_injection', 'Workdirs go here.')
  flags.DEFINE_integer('seed', 0, 'Seed of the kill moments.')
  flags.DEFINE_string('data_dir', '', 'tfds data dir ("" = the default).')
  flags.DEFINE_enum('signal', 'KILL', ['KILL', 'TERM'],
                    'KILL: no clean-up (the OOM killer, a lost machine); '
                    'TERM: a preemption notice, which saves and exits 0.')


def main() -> int:
  import numpy as np  # pylint: disable=g-import-not-at-top
  values = flags.FLAGS
  root = os.path.abspath(values.root)
  os.makedirs(root, exist_ok=True)
  config = 'configs/synthetic.py:smoke'
  rng = np.random.default_rng(values.seed)
  sig = getattr(signal, 'SIG' + values.signal)

  reference_dir = os.path.join(root, 'reference')
  command = main_command(config, reference_dir, values.data_dir,
                         FAULT_OVERRIDES)
  if os.path.exists(reference_dir):
    shutil.rmtree(reference_dir)
  reference = run_main(command, reference_dir)
  if reference.returncode:
    raise SystemExit('error: the reference run failed:\n' +
                     '\n'.join(reference.console[-20:]))
  expected = final_sha(reference_dir)
  print(f'reference params_sha256 {expected[:16]}…; killing {values.kills} '
        'runs at random points of their progress', flush=True)
  trials = []
  for i in range(values.kills):
    workdir = os.path.join(root, f'trial_{i:02d}')
    if os.path.exists(workdir):
      shutil.rmtree(workdir)
    marker = MARKERS[int(rng.integers(len(MARKERS)))]
    delay = float(rng.uniform(0.0, MAX_DELAY_S))
    command = main_command(config, workdir, values.data_dir, FAULT_OVERRIDES)
    runs = run_trial(command, workdir, console_line(marker, delay),
                     sig=sig)
    first = runs[0]
    identical = final_sha(workdir) == expected
    if sig == signal.SIGTERM and first.killed:
      # A preemption notice: saved and left with status 0 and its line
      # (or, if it came after the last step, finished the run).
      identical = identical and first.returncode == 0 and bool(
          first.console) and (first.console[-1].startswith('preempted at step')
                              or len(runs) == 1)
    trial = dict(trial=i, after=MARKER_NAMES[marker],
                 delay_s=round(delay, 2), killed=first.killed,
                 phase=first.phase if first.killed else 'finished first',
                 resumed_from=runs[1].resumed_from if len(runs) > 1 else None,
                 reruns=len(runs) - 1, identical=identical,
                 half_written_left=half_written_steps(workdir))
    trials.append(trial)
    if not trial['reruns']:
      restart = 'finished, no rerun'
    elif trial['resumed_from'] is None:
      restart = 'started afresh'
    else:
      restart = f"resumed from {trial['resumed_from']}"
    print(f"{i:3d}  {trial['after']:>12s} +{delay:4.2f} s  "
          f"{trial['phase']:<45s} "
          f"{restart:<16s}  {'identical' if identical else 'DIFFERENT'}",
          flush=True)
  killed = [t for t in trials if t['killed']]
  same = sum(t['identical'] for t in killed)
  what = 'killed' if sig == signal.SIGKILL else 'SIGTERM-preempted'
  print(f'{same} of {len(killed)} {what} runs resumed to bit-identical '
        f'weights ({len(trials) - len(killed)} finished before their kill '
        'moment)')
  with open(os.path.join(root, 'fault_injection.json'), 'w') as f:
    json.dump(dict(reference_sha256=expected, signal=values.signal,
                   identical=same, killed=len(killed), trials=trials), f,
              indent=2)
  return 0 if same == len(killed) else 1


if __name__ == '__main__':
  cli.run(main, define_flags, console_logging=False)
