"""Tables of sweep results: cells over seeds (mean ± sample std) and the
per-setting summary of any sweep (`python -m airstreams_jax.tools.summarize_sweep`).
"""

import collections
import glob
import math
import os
import re
from typing import Any, Dict, List, Sequence, Tuple

import tensorflow as tf

def mean_std(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample standard deviation (n - 1; 0 for a single value)."""
  n = len(values)
  mean = sum(values) / n
  if n == 1:
    return mean, 0.0
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_cell(values: Sequence[float], scale: float = 100.0,
                digits: int = 1) -> str:
  """'81.2 ± 1.4 (3)': mean ± sample std over seeds, as a percentage;
  '81.2 (1)' for one seed (no spread to show); '—' if none."""
  if not values:
    return '—'
  mean, std = mean_std([v * scale for v in values])
  if len(values) == 1:
    return f'{mean:.{digits}f} (1)'
  return f'{mean:.{digits}f} ± {std:.{digits}f} ({len(values)})'


_SEED = re.compile(r'(,seed=\d+|_s\d+)$')
FLOW_SCALARS = ('theta', 'lambda', 'tau')
# (column, where in a unit's metrics, scale to print).
_COLUMNS = (
    ('top-1', ('top1',), 100.0),
    ('RGB head', ('per_stream', 'rgb'), 100.0),
    ('flow head', ('per_stream', 'flow'), 100.0),
    ('sem. head', ('per_stream', 'semantic'), 100.0),
    ('flow dir. acc.', ('representations', 'flow_direction_accuracy'), 100.0),
    ('seg mIoU (teacher)', ('representations', 'seg_miou'), 100.0),
    ('seg mIoU (truth)', ('representations', 'truth_seg_miou'), 100.0),
    ('teacher mIoU (truth)', ('representations', 'truth_teacher_miou'),
     100.0),
)


def setting(name: str) -> str:
  return _SEED.sub('', name)


def last_scalars(workdir: str, names: Sequence[str]) -> Dict[str, float]:
  """The last logged value of `train/flow_layer/<name>` for each name."""
  found: Dict[str, tuple] = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for raw in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(raw.numpy())
      for value in event.summary.value:
        name = value.tag.rsplit('/', 1)[-1]
        if value.tag.startswith('train/flow_layer/') and name in names:
          number = (value.simple_value if value.HasField('simple_value')
                    else float(tf.make_ndarray(value.tensor)))
          if name not in found or event.step >= found[name][0]:
            found[name] = (event.step, number)
  return {k: v for k, (_, v) in found.items()}


def _get(metrics: Dict[str, Any], path: Sequence[str]):
  for key in path:
    if not isinstance(metrics, dict) or key not in metrics:
      return None
    metrics = metrics[key]
  return metrics


def summary_markdown(root: str, record: Dict[str, Any]) -> str:
  groups: Dict[str, List[Dict[str, Any]]] = collections.OrderedDict()
  for entry in record['units']:
    if entry['status'] == 'done' and entry.get('mode') != 'evolve':
      metrics = dict(entry.get('metrics') or {})
      metrics['flow_layer'] = last_scalars(
          os.path.join(root, entry['name']), FLOW_SCALARS)
      groups.setdefault(setting(entry['name']), []).append(metrics)
  columns = [c for c in _COLUMNS if any(
      _get(m, c[1]) is not None for runs in groups.values() for m in runs)]
  show_flow = any(m['flow_layer'] for runs in groups.values() for m in runs)
  header = ['setting'] + [c[0] for c in columns] + (
      ['θ', 'λ', 'τ'] if show_flow else [])
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  for name, runs in groups.items():
    cells = [name]
    for _, path, scale in columns:
      cells.append(format_cell(
          [_get(m, path) for m in runs if _get(m, path) is not None], scale))
    if show_flow:
      for scalar in FLOW_SCALARS:
        values = [m['flow_layer'][scalar] for m in runs
                  if scalar in m['flow_layer']]
        cells.append(format_cell(values, 1.0, 3) if values
                     else '—')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'
