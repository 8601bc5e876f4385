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
from typing import Any, Dict, List, Optional, Sequence

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
                 for k, v in sweep_lib.flatten(unit.overrides).items()},
      after=unit.dependencies(), command=sweep_lib.command(unit, root),
      workdir=workdir, log=os.path.join(workdir, LOG_FILE),
      status='pending', return_code=None, attempts=0, wall_time_s=0.0,
      started=None, finished=None, metrics={})


def merge(previous: Optional[Dict[str, Any]], units: Sequence[sweep_lib.Unit],
          root: str, sweep: str) -> Dict[str, Any]:
  """The record of this launch: previous entries kept where the unit is the
  same, a unit left 'running' by a killed launcher marked interrupted.

  Raises:
    ValueError: a finished unit whose command changed (its workdir holds a
      run of another config; rerunning there would resume it).
  """
  old = {e['name']: e for e in (previous or {}).get('units', [])}
  entries: List[Dict[str, Any]] = []
  for unit in units:
    entry = new_entry(unit, root)
    before = old.get(unit.name)
    if before is not None:
      if before['status'] == 'done' and before['command'] != entry['command']:
        raise ValueError(
            f'unit {unit.name!r} finished with another command '
            f'({" ".join(before["command"][2:])}); delete '
            f'{entry["workdir"]} to rerun it or give the unit a new name.')
      for key in ('status', 'return_code', 'attempts', 'wall_time_s',
                  'started', 'finished', 'metrics'):
        entry[key] = before[key]
      if entry['status'] in ('running', 'blocked'):
        entry['status'] = 'interrupted' if entry['status'] == 'running' else (
            'pending')
    entries.append(entry)
  created = (previous or {}).get('created',
                                 time.strftime('%Y-%m-%dT%H:%M:%S%z'))
  return dict(sweep=sweep, root=os.path.abspath(root), created=created,
              units=entries)


def final_metrics(workdir: str, mode: str) -> Dict[str, Any]:
  """What a finished unit measured, from the files it wrote."""
  if mode == 'evolve':
    path = os.path.join(workdir, 'best_weights.json')
    if not os.path.exists(path):
      return {}
    with open(path) as f:
      return {'best_weights': json.load(f)}
  path = os.path.join(workdir, 'eval_results.json')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    results = json.load(f)
  metrics = {k: results[k] for k in _RESULT_KEYS if k in results}
  representations = results.get('representations', {})
  metrics['representations'] = {k: representations[k]
                                for k in _REPRESENTATION_KEYS
                                if k in representations}
  return metrics


def counts(record: Dict[str, Any]) -> Dict[str, int]:
  statuses = [e['status'] for e in record['units']]
  return {s: statuses.count(s) for s in STATUSES}
