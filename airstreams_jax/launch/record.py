"""`ROOT/experiment.json`: what a sweep ran, how it went, what it measured.

One entry per unit: name, config, mode, overrides, dependencies, command,
workdir, log file, status, return code, attempts, wall time (summed over
attempts), start and end of the last attempt (Unix seconds) and the final
metrics read from the unit's workdir. The file is
replaced atomically (write, then rename), so a sweep stopped at any moment
leaves either the previous record or the new one, never half of one.

Statuses: pending (not started), running, done, failed (non-zero exit),
interrupted (stopped by Ctrl-C / SIGTERM; a rerun resumes it), blocked (a
unit it waits for failed).
"""

import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

from airstreams_jax.launch import config_overrides
from airstreams_jax.launch import sweep as sweep_lib

RECORD_FILE = 'experiment.json'
LOG_FILE = 'log.txt'
STATUSES = ('pending', 'running', 'done', 'failed', 'interrupted', 'blocked')
# eval_results.json keys worth a place in the record (the rest stays there).
_RESULT_KEYS = ('step', 'top1', 'top5', 'mean_class_accuracy', 'mAP',
                'num_examples', 'num_classes', 'per_stream', 'params_sha256')
_REPRESENTATION_KEYS = ('seg_miou', 'seg_pixel_accuracy', 'truth_seg_miou',
                        'truth_teacher_miou', 'flow_epe',
                        'flow_direction_accuracy')


def read(root: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(root, RECORD_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write(root: str, record: Dict[str, Any]) -> None:
  record['updated'] = time.strftime('%Y-%m-%dT%H:%M:%S%z')
  path = os.path.join(root, RECORD_FILE)
  temporary = path + '.tmp'
  with open(temporary, 'w') as f:
    json.dump(record, f, indent=1, sort_keys=False)
    f.write('\n')
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)


def new_entry(unit: sweep_lib.Unit, root: str) -> Dict[str, Any]:
  workdir = os.path.join(root, unit.name)
  return dict(
      name=unit.name, config=unit.config, mode=unit.mode,
      overrides={k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in config_overrides.flatten(unit.overrides).items()},
      after=unit.dependencies(), key=sweep_lib.unit_key(unit),
      command=sweep_lib.command(unit, root),
      workdir=workdir, log=os.path.join(workdir, LOG_FILE),
      status='pending', return_code=None, attempts=0, wall_time_s=0.0,
      started=None, finished=None, metrics={})


def merge(previous: Optional[Dict[str, Any]], units: Sequence[sweep_lib.Unit],
          root: str, sweep: str) -> Dict[str, Any]:
  """The record of this launch, continuing the previous one.

  A unit keeps its previous status and history when its settings (config,
  mode, overrides: `sweep.unit_key`) are unchanged; a unit left 'running'
  by a launcher that died is marked interrupted; a done unit whose workdir
  was deleted runs again. Units of the previous record that are not in this
  sweep move to `dropped`, so their results are not lost.

  Raises:
    ValueError: a unit that ran before with other settings while its
      workdir still exists (rerunning there would resume the other run).
  """
  old = {e['name']: e for e in (previous or {}).get('units', [])}
  dropped = {e['name']: e for e in (previous or {}).get('dropped', [])}
  entries: List[Dict[str, Any]] = []
  for unit in units:
    entry = new_entry(unit, root)
    before = old.pop(unit.name, None) or dropped.pop(unit.name, None)
    workdir_exists = os.path.isdir(entry['workdir'])
    if before is not None and before['attempts'] and workdir_exists and (
        before.get('key', before['command']) != entry['key'] and
        before['command'] != entry['command']):
      raise ValueError(
          f'unit {unit.name!r} ran before with other settings '
          f'({" ".join(before["command"][3:])}); delete {entry["workdir"]} '
          'to run it with these, or give the unit a new name.')
    if before is not None and (workdir_exists or before['status'] != 'done'):
      for key in ('status', 'return_code', 'attempts', 'wall_time_s',
                  'started', 'finished', 'metrics'):
        entry[key] = before[key]
      if entry['status'] == 'running':
        entry['status'] = 'interrupted'
      elif entry['status'] == 'blocked':
        entry['status'] = 'pending'
    entries.append(entry)
  created = (previous or {}).get('created',
                                 time.strftime('%Y-%m-%dT%H:%M:%S%z'))
  return dict(sweep=sweep, root=os.path.abspath(root), created=created,
              units=entries, dropped=[*old.values(), *dropped.values()])


def _read_json(path: str) -> Optional[Any]:
  """A result file's content; None if missing or unreadable (a unit killed
  while writing it): the record then just lacks the metrics."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _results_file(workdir: str, mode: str) -> str:
  return os.path.join(workdir, 'best_weights.json' if mode == 'evolve'
                      else 'eval_results.json')


def wrote_results(workdir: str, mode: str, since: float) -> bool:
  """Whether the unit's attempt that started at `since` (time.time()) wrote
  its results: a `main` that exits 0 without them was preempted (SIGTERM:
  it saved a checkpoint and left), not finished."""
  try:
    return os.path.getmtime(_results_file(workdir, mode)) >= since - 1
  except OSError:
    return False


def final_metrics(workdir: str, mode: str) -> Dict[str, Any]:
  """What a finished unit measured, from the files it wrote."""
  if mode == 'evolve':
    best = _read_json(_results_file(workdir, mode))
    return {} if best is None else {'best_weights': best}
  results = _read_json(_results_file(workdir, mode))
  if results is None:
    return {}
  metrics = {k: results[k] for k in _RESULT_KEYS if k in results}
  representations = results.get('representations', {})
  metrics['representations'] = {k: representations[k]
                                for k in _REPRESENTATION_KEYS
                                if k in representations}
  return metrics


def units_to_run(record: Dict[str, Any]) -> List[str]:
  """The units a launch runs: every one not done, in the record's order;
  those that failed or were interrupted before are tried again (pending)."""
  todo = [e['name'] for e in record['units'] if e['status'] != 'done']
  for entry in record['units']:
    if entry['name'] in todo:
      entry['status'] = 'pending'
  return todo


def open_attempt_log(entry: Dict[str, Any], via: str = '') -> TextIO:
  """The unit's log, opened to append, after a line that starts an attempt
  (`via`: how it was launched, e.g. ' (xmanager)')."""
  os.makedirs(entry['workdir'], exist_ok=True)
  log = open(entry['log'], 'a')
  log.write(f"=== attempt {entry['attempts'] + 1}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}{via}: "
            f"{' '.join(entry['command'])}\n")
  log.flush()
  return log


def counts(record: Dict[str, Any]) -> Dict[str, int]:
  statuses = [e['status'] for e in record['units']]
  return {s: statuses.count(s) for s in STATUSES}
