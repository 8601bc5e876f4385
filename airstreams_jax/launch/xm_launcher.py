"""The XManager launcher: a sweep as one XManager experiment on this machine
(Vertex AI and Kubernetes: `xm_cloud.py`).

  python -m airstreams_jax.launch --sweep=FILE.py[:arg] --root=ROOT \
      --launcher=xmanager

Every unit of the sweep becomes a work unit of one `xm_local` experiment
(the local executor: a process on this machine, no Docker, no cloud), so the
sweep is listed with the user's other XManager experiments. XManager has no
dependencies between work units, so a unit is submitted only once the work
units it waits for completed successfully (the launcher awaits their
completion); one whose dependency failed is recorded as blocked.

The executable is the running Python interpreter packaged as an `xm.binary`,
which xm_local runs as a plain process (`xm.python_container`, like every
container packaging, needs Docker), and each work unit's arguments are its
`airstreams_jax.main` command line from `sweep.command`. Each unit's output
goes to `ROOT/<name>/log.txt` and `ROOT/experiment.json` is kept as the local
launcher keeps it (`airstreams_jax/launch/record.py`), with
`xm_experiment_id` added: a rerun skips done units, with either launcher.

XManager is optional (`pip install xmanager==XMANAGER_VERSION`): this module
imports without it and `launch` says how to install it. Newer releases than
XMANAGER_VERSION require protobuf<7, which conflicts with requirements.txt.
XManager keeps its experiment list in ~/.xmanager/experiments.sqlite3. Its
--xm_* flags keep their defaults: `python -m airstreams_jax.launch` parses
its command line before xmanager is imported, so it rejects them.
"""

import asyncio
import os
import re
import shlex
import signal
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence, TextIO

from absl import flags

from airstreams_jax import errors
from airstreams_jax.launch import local
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep as sweep_lib

# The release this launcher was tested with, and the newest one whose
# requirements agree with the pins of requirements.txt.
XMANAGER_VERSION = '0.8.1'
# xm_local reports a failed local binary only in this message.
_RETURN_CODE = re.compile(r'returned non-zero code: (-?\d+)')


def _import_xmanager():
  """The `xm` and `xm_local` modules, or the one-line way to get them."""
  try:
    # pylint: disable=g-import-not-at-top
    from xmanager import xm
    from xmanager import xm_local
    # xm_local loads its executors lazily; load them now so that a broken
    # install fails here, not halfway through a sweep.
    xm_local.Local  # pylint: disable=pointless-statement
  except ImportError as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise errors.ConfigError(
        f'--launcher=xmanager needs XManager ({reason}); install it with '
        f'`pip install xmanager=={XMANAGER_VERSION}`.') from None
  return xm, xm_local


# For the cloud executors (xm_cloud.py).
import_xmanager = _import_xmanager


def _return_code(error: BaseException) -> Optional[int]:
  match = _RETURN_CODE.search(str(error))
  return int(match.group(1)) if match else None


async def _stop(work_unit: Any, grace_s: float) -> Optional[int]:
  """Stops a work unit: SIGTERM, SIGKILL after grace_s; its return code.

  xm_local (0.8.1) cannot do it: a local binary's handle does not
  implement `stop()`, and the `terminate()` it calls at exit signals only the
  shell that runs the command, leaving python running. That shell leads its
  own session, so its process group holds the whole unit, and outlives the
  shell.
  """
  processes = [handle.process for handle in
               getattr(work_unit, '_local_execution_handles', ())
               if getattr(handle, 'process', None) is not None]
  groups = [p.pid for p in processes]

  def signal_groups(sig: int) -> bool:
    """Whether any process of the groups was there to signal."""
    alive = False
    for group in groups:
      try:
        os.killpg(group, sig)
        alive = True
      except ProcessLookupError:
        pass
    return alive

  signal_groups(signal.SIGTERM)
  deadline = time.time() + grace_s
  while signal_groups(0) and time.time() < deadline:
    await asyncio.sleep(0.2)
  signal_groups(signal.SIGKILL)
  for process in processes:
    await process.wait()
  return processes[0].returncode if processes else None


class _XmSweep:
  """The units still to run, as work units of one xm_local experiment."""

  def __init__(self, xm, xm_local, record: Dict[str, Any],
               save: Callable[[], None], out: TextIO, grace_s: float):
    self._xm = xm
    self._xm_local = xm_local
    self._record = record
    self._save = save
    self._out = out
    self._grace_s = grace_s
    self._entries = {e['name']: e for e in record['units']}
    self.todo = record_lib.units_to_run(record)
    self._finished: Dict[str, asyncio.Event] = {}

  def _event(self, text: str) -> None:
    print(f'[sweep] {text}', file=self._out, flush=True)

  async def run(self, title: str) -> None:
    # Events made here, inside the loop that awaits them.
    self._finished = {name: asyncio.Event() for name in self._entries}
    for name, entry in self._entries.items():
      if entry['status'] == 'done':
        self._finished[name].set()
    loop = asyncio.get_running_loop()
    try:  # SIGTERM stops the sweep as Ctrl-C does (asyncio.run's SIGINT).
      loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
      handles_sigterm = True
    except (RuntimeError, ValueError, NotImplementedError):  # Not main thread.
      handles_sigterm = False
    try:
      async with self._xm_local.create_experiment(
          experiment_title=title) as experiment:
        self._record['xm_experiment_id'] = experiment.experiment_id
        self._save()
        self._event(f'XManager experiment {experiment.experiment_id}: '
                    f'{len(self.todo)} unit(s) to run.')
        [executable] = experiment.package([self._xm.binary(
            executor_spec=self._xm_local.LocalSpec(), path=sys.executable)])
        # return_exceptions: a cancelled sweep waits for every unit to stop
        # and be recorded (plain gather returns at the first cancelled one).
        results = await asyncio.gather(
            *(self._run_unit(experiment, executable, name)
              for name in self.todo), return_exceptions=True)
        for result in results:
          if isinstance(result, BaseException):
            raise result
    except RuntimeError as e:
      # Leaving an xm_local experiment waits for its local jobs once more
      # and raises the first failed one's error, which the record holds.
      failed = [n for n in self.todo if self._entries[n]['status'] == 'failed']
      if not failed or _return_code(e) is None:
        raise
    finally:
      if handles_sigterm:
        loop.remove_signal_handler(signal.SIGTERM)

  async def _run_unit(self, experiment, executable, name: str) -> None:
    entry = self._entries[name]
    try:
      for dependency in entry['after']:
        await self._finished[dependency].wait()
      bad = [d for d in entry['after']
             if self._entries[d]['status'] != 'done']
      if bad:
        entry['status'] = 'blocked'
        self._event(f'{name} blocked: {", ".join(bad)} did not finish.')
        self._save()
        return
      await self._submit(experiment, executable, entry)
    finally:
      self._finished[name].set()

  async def _submit(self, experiment, executable, entry: Dict[str, Any]
                    ) -> None:
    """One work unit, from submission to its final status in the record."""
    xm = self._xm
    # The local launcher's attempt line, so logs read the same.
    record_lib.open_attempt_log(entry, via=' (xmanager)').close()
    started = time.time()
    entry.update(status='running', attempts=entry['attempts'] + 1,
                 started=started, finished=None)
    self._save()
    work_unit = None
    try:
      # xm_local runs a binary's command line through the shell, so an
      # unquoted redirection sends the unit's output to its log file.
      job = xm.Job(
          executable,
          executor=self._xm_local.Local(experimental_stream_output=False),
          args=[*entry['command'][1:],
                xm.ShellSafeArg(f">> {shlex.quote(entry['log'])} 2>&1")])
      work_unit = await experiment.add(job)
      self._event(f"{entry['name']} started: work unit "
                  f'{work_unit.work_unit_id}.')
      await work_unit.wait_until_complete()
    except asyncio.CancelledError:
      code = None if work_unit is None else await _stop(work_unit,
                                                        self._grace_s)
      entry.update(status='interrupted', return_code=code,
                   wall_time_s=entry['wall_time_s'] + time.time() - started)
      self._save()
      raise
    except Exception as e:  # pylint: disable=broad-except
      # A failed unit fails alone (xm.ExperimentUnitError for a non-zero
      # exit; anything else is a failed submission): the others go on.
      code = _return_code(e)
      entry.update(status='failed', return_code=code, finished=time.time())
      entry['wall_time_s'] += entry['finished'] - started
      reason = f'exit code {code}' if code is not None else str(e)
      self._event(local.failed_message(entry, reason))
    else:
      if not record_lib.wrote_results(entry['workdir'], entry['mode'],
                                      started):
        # Preempted (SIGTERM): main saved its step and exited 0.
        entry.update(status='interrupted', return_code=0,
                     finished=time.time())
        entry['wall_time_s'] += entry['finished'] - started
        self._event(local.preempted_message(entry))
        self._save()
        return
      entry.update(status='done', return_code=0, finished=time.time(),
                   metrics=record_lib.final_metrics(entry['workdir'],
                                                    entry['mode']))
      entry['wall_time_s'] += entry['finished'] - started
      self._event(local.done_message(entry))
    self._save()


def launch(units: Sequence[sweep_lib.Unit], root: str, *, sweep: str = '',
           out: TextIO = sys.stderr, grace_s: float = 30.0,
           on_change: Optional[Callable[[Dict[str, Any]], None]] = None
           ) -> Dict[str, Any]:
  """Runs the (checked) units as one XManager experiment; returns the record.

  Returns when every unit is done, failed or blocked; all units whose
  dependencies are done run at once (XManager has no slot limit, so
  --parallel does not apply).

  Args:
    units: from `sweep.load` or `sweep.check`.
    root: the sweep's directory (created).
    sweep: what the sweep was ('file.py:arg'), for the record and the
      experiment's title.
    out: where progress and failures are written.
    grace_s: seconds a stopped unit gets to exit before SIGKILL.
    on_change: called with the record after every change (tests).

  Raises:
    errors.ConfigError: XManager is not installed, the interpreter's path
      cannot be run by xm_local, or a done unit's command changed.
    KeyboardInterrupt: after Ctrl-C / SIGTERM, once the running units were
      stopped and the record says which were interrupted.
  """
  xm, xm_local = _import_xmanager()
  if shlex.quote(sys.executable) != sys.executable:
    # xm_local joins the binary's path into a shell command unquoted.
    raise errors.ConfigError(
        f'xm_local cannot run the interpreter {sys.executable!r}: its path '
        'holds spaces or shell characters; use a venv at a plain path.')
  if not flags.FLAGS.is_parsed():
    # XManager reads its --xm_* flags; a caller that parsed none (a test, a
    # notebook) gets their defaults.
    flags.FLAGS.mark_as_parsed()
  try:
    record = record_lib.merge(record_lib.read(root), units, root, sweep)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  os.makedirs(root, exist_ok=True)

  def save():
    record_lib.write(root, record)
    if on_change is not None:
      on_change(record)

  runner = _XmSweep(xm, xm_local, record, save, out, grace_s)
  save()
  skipped = len(record['units']) - len(runner.todo)
  if skipped:
    print(f"[sweep] {skipped} of {len(record['units'])} units already done; "
          'skipping them.', file=out, flush=True)
  title = f'airstreams_jax sweep {sweep or os.path.abspath(root)}'
  try:
    asyncio.run(runner.run(title))
  except (KeyboardInterrupt, asyncio.CancelledError):
    raise KeyboardInterrupt(
        'sweep stopped; rerun the same command to resume '
        f'({os.path.join(root, record_lib.RECORD_FILE)}).') from None
  return record
