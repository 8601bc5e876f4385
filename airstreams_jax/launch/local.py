"""The local launcher: a sweep's units as subprocesses of `airstreams_jax.main`.

At most `parallel` units run at once, each in its own workdir `ROOT/<name>`
with its output in `ROOT/<name>/log.txt`; a unit starts when the units it
waits for are done. A slot's unit may get its own CPU cores (affinity), GPUs
(`CUDA_VISIBLE_DEVICES`) or fake CPU devices, so parallel units do not fight
over one device. `ROOT/experiment.json` is rewritten at every change.

A rerun of the same sweep skips done units and resumes the others (each
workdir resumes from its latest checkpoint). Ctrl-C or SIGTERM stops the
children (SIGTERM to each child's process group, SIGKILL after a grace
period), marks them interrupted and leaves a consistent record. A failed unit
is reported with the tail of its log; the others go on, and the units that
wait for it are marked blocked.
"""

import contextlib
import ctypes
import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep as sweep_lib

LOG_TAIL_LINES = 15

_DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'
_COLLECTIVE_TIMEOUT_FLAG = '--xla_cpu_collective_call_terminate_timeout_seconds'
# How long a CPU collective waits for every fake device (XLA's default: 40).
FAKE_DEVICE_COLLECTIVE_TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class Resources:
  """What each running unit may use; 0 = not restricted."""
  cpus_per_unit: int = 0  # CPU cores pinned per slot (affinity).
  gpus_per_unit: int = 0  # CUDA_VISIBLE_DEVICES per slot.
  cpu_devices_per_unit: int = 0  # Fake JAX CPU devices (XLA_FLAGS).

  def check(self, parallel: int) -> None:
    """Raises ValueError when the slots need more GPUs than are visible."""
    visible = _visible_gpus()
    if self.gpus_per_unit and visible is not None and (
        parallel * self.gpus_per_unit > len(visible)):
      raise ValueError(
          f'{parallel} units x {self.gpus_per_unit} GPUs need '
          f'{parallel * self.gpus_per_unit} GPUs; CUDA_VISIBLE_DEVICES has '
          f'{len(visible)}: lower --parallel or --gpus_per_unit.')

  def environment(self, slot: int) -> Dict[str, str]:
    env = dict(os.environ)
    if self.gpus_per_unit:
      # The slot's share of the GPUs this launcher may use.
      visible = _visible_gpus()
      first = slot * self.gpus_per_unit
      ids = [str(i) for i in range(first, first + self.gpus_per_unit)]
      if visible is not None:
        ids = [visible[int(i)] for i in ids]
      env['CUDA_VISIBLE_DEVICES'] = ','.join(ids)
    if self.cpu_devices_per_unit:
      flags = [f for f in env.get('XLA_FLAGS', '').split()
               if not f.startswith((_DEVICE_COUNT_FLAG,
                                    _COLLECTIVE_TIMEOUT_FLAG))]
      flags.append(f'{_DEVICE_COUNT_FLAG}={self.cpu_devices_per_unit}')
      # Fake devices are threads of one process, and the units share the
      # cores: XLA aborts the process when a collective waits 40 s for one
      # of them (seen with 8 fake devices and four busy processes on 2
      # cores). A starved thread is slow, not stuck.
      flags.append(
          f'{_COLLECTIVE_TIMEOUT_FLAG}={FAKE_DEVICE_COLLECTIVE_TIMEOUT_S}')
      env['XLA_FLAGS'] = ' '.join(flags)
    return env

  def cores(self, slot: int) -> Optional[List[int]]:
    if not self.cpus_per_unit:
      return None
    available = sorted(os.sched_getaffinity(0))
    first = slot * self.cpus_per_unit
    return [available[(first + i) % len(available)]
            for i in range(self.cpus_per_unit)]


def _visible_gpus() -> Optional[List[str]]:
  value = os.environ.get('CUDA_VISIBLE_DEVICES')
  return None if value is None else [v for v in value.split(',') if v]


def default_resources(parallel: int) -> Resources:
  """Parallel units on a CPU machine each get an equal share of the cores."""
  cores = len(os.sched_getaffinity(0))
  if parallel > 1 and cores >= parallel:
    return Resources(cpus_per_unit=cores // parallel)
  return Resources()


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
  if not os.path.exists(path):
    return '(no log)'
  with open(path, errors='replace') as f:
    return ''.join(f.readlines()[-lines:]).rstrip()


def format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


def done_message(entry: Dict[str, Any]) -> str:
  """'NAME done in 3m02s (top-1 0.8125).' for a finished unit."""
  metrics = entry.get('metrics') or {}
  result = ''
  if 'top1' in metrics:
    result = f" (top-1 {metrics['top1']:.4f})"
  elif 'mAP' in metrics:
    result = f" (mAP {metrics['mAP']:.4f})"
  return (f"{entry['name']} done in {format_duration(entry['wall_time_s'])}"
          f'{result}.')


def preempted_message(entry: Dict[str, Any]) -> str:
  """A unit that saved a checkpoint and left on SIGTERM."""
  return (f"{entry['name']} preempted: it saved its step and left without "
          'results; rerun the same launch command to resume it.')


def failed_message(entry: Dict[str, Any], reason: str) -> str:
  """A failed unit, with the end of its log (where main's error is)."""
  return (f"{entry['name']} FAILED ({reason}); last lines of "
          f"{entry['log']}:\n{log_tail(entry['log'])}")


class _Progress:
  """One line for the sweep: a tqdm bar on a terminal, else event lines."""

  def __init__(self, total: int, done: int, out: TextIO):
    self._out = out
    self._bar = None
    self._start = time.time()
    self._done_at_start = done
    if out.isatty():
      import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm.tqdm(total=total, initial=done, unit='unit',
                            file=out, desc='sweep', dynamic_ncols=True)

  def event(self, text: str) -> None:
    if self._bar is not None:
      self._bar.write(text, file=self._out)
    else:
      print(text, file=self._out, flush=True)

  def update(self, counts: Dict[str, int], total: int) -> str:
    done = counts['done']
    finished = done - self._done_at_start
    remaining = total - done - counts['failed'] - counts['blocked']
    eta = ''
    if finished > 0 and remaining > 0:
      eta = ', ETA ' + format_duration(
          (time.time() - self._start) / finished * remaining)
    status = (f"{done}/{total} done, {counts['running']} running, "
              f"{counts['failed']} failed"
              + (f", {counts['blocked']} blocked" if counts['blocked'] else '')
              + eta)
    if self._bar is not None:
      self._bar.n = done
      self._bar.set_postfix_str(status.split(', ', 1)[1], refresh=True)
    return status

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


class _StopRequest:
  """Turns SIGINT / SIGTERM / SIGHUP into a flag the launch loop checks."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


@dataclasses.dataclass
class _Running:
  process: subprocess.Popen
  slot: int
  started: float
  log: TextIO


def _die_with_parent() -> Optional[Callable[[], None]]:
  """A child set-up that makes the kernel SIGTERM the child when the
  launcher dies (SIGKILL, OOM), so no training outlives its sweep (Linux)."""
  if not sys.platform.startswith('linux'):
    return None
  prctl = ctypes.CDLL(None, use_errno=True).prctl  # Resolved before fork.
  parent = os.getpid()
  def set_up():
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG.
    if os.getppid() != parent:  # The launcher died before prctl.
      os._exit(1)  # pylint: disable=protected-access
  return set_up


def _start(entry: Dict[str, Any], slot: int, resources: Resources,
           set_up: Optional[Callable[[], None]]) -> _Running:
  log = record_lib.open_attempt_log(entry)
  process = subprocess.Popen(
      entry['command'], stdout=log, stderr=subprocess.STDOUT,
      stdin=subprocess.DEVNULL, env=resources.environment(slot),
      # Own process group: Ctrl-C reaches the launcher only, which stops
      # the children itself and records them as interrupted.
      start_new_session=True, preexec_fn=set_up)
  cores = resources.cores(slot)
  if cores:
    # Set from here, not in the child before exec: the interpreter starts
    # its thread pools after this, and they inherit the affinity.
    os.sched_setaffinity(process.pid, cores)
  return _Running(process, slot, time.time(), log)


@contextlib.contextmanager
def _only_launcher(root: str):
  """One launcher per sweep root: a second one would start the same units
  again in the same workdirs."""
  with open(os.path.join(root, 'launch.lock'), 'a') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ValueError(
          f'another launcher is running the sweep in {root}; wait for it or '
          'stop it (Ctrl-C / SIGTERM) first.') from None
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _stop_all(running: Dict[str, _Running], grace_s: float) -> None:
  for job in running.values():
    try:
      os.killpg(job.process.pid, signal.SIGTERM)
    except ProcessLookupError:
      pass
  deadline = time.time() + grace_s
  for job in running.values():
    try:
      job.process.wait(timeout=max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      try:
        os.killpg(job.process.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      job.process.wait()


def run(units: Sequence[sweep_lib.Unit], root: str, *, sweep: str = '',
        parallel: int = 1, resources: Optional[Resources] = None,
        grace_s: float = 30.0, poll_s: float = 0.5,
        out: TextIO = sys.stderr,
        on_change: Optional[Callable[[Dict[str, Any]], None]] = None
        ) -> Dict[str, Any]:
  """Runs the (checked) units; returns the final experiment record.

  Args:
    units: from `sweep.load` or `sweep.check`.
    root: the sweep's directory (created).
    sweep: what the sweep was ('file.py:arg'), for the record.
    parallel: units running at once.
    resources: per-slot devices; `default_resources(parallel)` when None.
    grace_s: seconds a stopped child gets to exit before SIGKILL.
    poll_s: seconds between checks of the children.
    out: where progress and failures are written.
    on_change: called with the record after every change (tests).

  Raises:
    ValueError: a unit that ran with other settings (see `record.merge`),
      another launcher running in `root`, or too few GPUs for the slots.
    KeyboardInterrupt: after Ctrl-C / SIGTERM / SIGHUP, once the children
      stopped and the record says which units were interrupted.
  """
  if parallel < 1:
    raise ValueError(f'parallel={parallel}; give at least 1.')
  resources = resources or default_resources(parallel)
  resources.check(parallel)
  os.makedirs(root, exist_ok=True)
  with _only_launcher(root):
    return _run_locked(units, root, sweep, parallel, resources, grace_s,
                       poll_s, out, on_change)


def _run_locked(units, root, sweep, parallel, resources, grace_s, poll_s,
                out, on_change) -> Dict[str, Any]:
  """`run`, holding the root's launcher lock."""
  record = record_lib.merge(record_lib.read(root), units, root, sweep)
  entries = {e['name']: e for e in record['units']}
  todo = record_lib.units_to_run(record)
  total = len(entries)

  def save():
    record_lib.write(root, record)
    if on_change is not None:
      on_change(record)

  save()
  progress = _Progress(total, total - len(todo), out)
  skipped = total - len(todo)
  if skipped:
    progress.event(f'[sweep] {skipped} of {total} units already done; '
                   'skipping them.')
  running: Dict[str, _Running] = {}
  set_up = _die_with_parent()
  with _StopRequest() as stop:
    try:
      while True:
        # Children that ended are recorded first, so that a stop request
        # never marks a finished unit as interrupted.
        changed = _collect_finished(running, entries, progress)
        if stop.signal is not None:
          progress.event(f'[sweep] {signal.Signals(stop.signal).name}: '
                         f'stopping {len(running)} running unit(s).')
          raise KeyboardInterrupt(
              f'sweep stopped; rerun the same command to resume '
              f'({os.path.join(root, record_lib.RECORD_FILE)}).')
        changed |= _block_dependents(todo, entries, progress)
        free = sorted(set(range(parallel)) - {j.slot for j in running.values()})
        for name in list(todo):
          if not free or stop.signal is not None:
            break
          entry = entries[name]
          if entry['status'] in ('done', 'failed', 'blocked') or (
              name in running):
            continue
          if all(entries[d]['status'] == 'done' for d in entry['after']):
            running[name] = _start(entry, free.pop(0), resources, set_up)
            entry.update(status='running', attempts=entry['attempts'] + 1,
                         started=time.time(), finished=None,
                         pid=running[name].process.pid)
            todo.remove(name)
            changed = True
        if changed:
          save()
          progress.event('[sweep] ' + progress.update(
              record_lib.counts(record), total))
        if not running:
          break
        time.sleep(poll_s)
    except BaseException:
      # Ctrl-C, SIGTERM, SIGHUP or a launcher error: no child may outlive
      # the launcher, and the record must say what happened to each.
      if running:
        _stop_all(running, grace_s)
        _collect_finished(running, entries, progress, stopped=True)
      save()
      raise
    finally:
      progress.close()
  return record


def _collect_finished(running: Dict[str, _Running],
                      entries: Dict[str, Dict[str, Any]],
                      progress: _Progress, stopped: bool = False) -> bool:
  """Records the children that exited; with `stopped`, the launcher stopped
  them and a non-zero exit means interrupted, not failed."""
  changed = False
  for name, job in list(running.items()):
    code = job.process.poll()
    if code is None:
      continue
    job.log.close()
    del running[name]
    entry = entries[name]
    entry['return_code'] = code
    entry['finished'] = time.time()
    entry['wall_time_s'] += entry['finished'] - job.started
    if stopped and code != 0:
      entry['status'] = 'interrupted'
    elif code == 0 and not record_lib.wrote_results(
        entry['workdir'], entry['mode'], job.started):
      # Preempted (SIGTERM from us or from the machine): saved and left.
      entry['status'] = 'interrupted'
      progress.event(f"[sweep] {preempted_message(entry)}")
    elif code == 0:
      entry['status'] = 'done'
      entry['metrics'] = record_lib.final_metrics(entry['workdir'],
                                                  entry['mode'])
      progress.event(f'[sweep] {done_message(entry)}')
    else:
      entry['status'] = 'failed'
      progress.event(
          f"[sweep] {failed_message(entry, f'exit code {code}')}")
    changed = True
  return changed


def _block_dependents(todo: List[str], entries: Dict[str, Dict[str, Any]],
                      progress: _Progress) -> bool:
  """Marks units that wait for a failed or blocked unit as blocked."""
  changed = True
  any_change = False
  while changed:
    changed = False
    for name in todo:
      entry = entries[name]
      if entry['status'] == 'blocked':
        continue
      bad = [d for d in entry['after']
             if entries[d]['status'] in ('failed', 'blocked')]
      if bad:
        entry['status'] = 'blocked'
        progress.event(f'[sweep] {name} blocked: {", ".join(bad)} failed.')
        changed = any_change = True
  return any_change
