"""Full trainings of given weightings, one workdir each, kept.

The confirmation of a search's winner (confirm.py) and the proxy-fidelity
measurement (tools/fidelity.py) train the config in full with chosen loss
weights and seeds and read the test split's merged top-1 (mAP when
multi-label). Each (weighting, seed) trains in its own directory with
`train.train_and_evaluate`, which resumes from its newest checkpoint; a
directory with `eval_results.json` is finished and is read, not retrained.
So a killed command loses at most the steps since a run's last checkpoint,
and a rerun continues where it stopped.

A directory trained with another config (other weights, seed, steps, data)
is refused rather than read: its result would answer another question.
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax.training import evaluation as eval_lib
from airstreams_jax.training import losses
from airstreams_jax.training import train

# Config keys that do not change a full training's result (where logs and
# checkpoints go, how often, the device layout, the search's settings).
_NOT_RESULT = ('evolution', 'log_every_steps', 'eval_every_steps',
               'checkpoint_every_steps', 'keep_checkpoints', 'mesh',
               'sharding_rules', 'eval_batch_size', 'loss_weights_file')
# Where the data lives, not what it is.
_NOT_RESULT_DATASET = ('data_dir', 'manual_dir', 'build_workers')


def run_config(config, weights: Sequence[float], seed: int):
  """`config` training `weights` (in `losses.LOSS_NAMES` order) with
  `seed`; the config's own `loss_weights_file` no longer applies."""
  run = config.copy_and_resolve_references()
  if len(weights) != len(losses.LOSS_NAMES):
    raise ValueError(f'{len(weights)} weights given; the loss has '
                     f'{len(losses.LOSS_NAMES)} ({losses.LOSS_NAMES}).')
  for name, weight in zip(losses.LOSS_NAMES, weights):
    run.loss_weights[name] = float(weight)
  run.loss_weights_file = ''
  run.seed = int(seed)
  return run


def _without_layout(described: Dict[str, Any]) -> Dict[str, Any]:
  """A config's JSON without the keys that do not change the result."""
  described = {k: v for k, v in described.items() if k not in _NOT_RESULT}
  if isinstance(described.get('dataset'), dict):
    described['dataset'] = {k: v for k, v in described['dataset'].items()
                            if k not in _NOT_RESULT_DATASET}
  return described


def description(config) -> Dict[str, Any]:
  """What decides a full training's result, as JSON."""
  return _without_layout(json.loads(config.to_json_best_effort()))


def differences(a: Any, b: Any, prefix: str = '') -> List[str]:
  """Dotted keys whose values differ between two JSON-like trees."""
  if isinstance(a, dict) and isinstance(b, dict):
    return [d for k in sorted(set(a) | set(b))
            for d in differences(a.get(k), b.get(k), f'{prefix}{k}.')]
  return [] if a == b else [prefix[:-1]]


def _stored_config(workdir: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(workdir, 'config.json')
  if not gfile.exists(path):
    return None
  with gfile.GFile(path) as f:
    return json.load(f)


def check_same_run(config, workdir: str) -> None:
  """Refuses a run directory that a different training started.

  Raises:
    errors.ConfigError: naming the keys that differ.
  """
  stored = _stored_config(workdir)
  if stored is None:
    return
  differ = differences(_without_layout(stored), description(config))
  if differ:
    raise errors.ConfigError(
        f'{workdir} holds a training with other settings '
        f'({", ".join(differ[:5])} differ); use the config it was trained '
        'with, or another workdir.')


def read_result(workdir: str) -> Optional[Dict[str, Any]]:
  """A finished run's `eval_results.json`; None if it has none yet."""
  path = os.path.join(workdir, eval_lib.RESULTS_FILE)
  if not gfile.exists(path):
    return None
  with gfile.GFile(path) as f:
    return json.load(f)


def train_or_read(config, weights: Sequence[float], seed: int, workdir: str,
                  mesh: Optional[jax.sharding.Mesh] = None
                  ) -> Tuple[Dict[str, Any], bool]:
  """(results, trained now): the run of `weights` with `seed` in `workdir`,
  read if it finished before, else trained (resumed from its checkpoint).

  Raises:
    errors.ConfigError: `workdir` holds a run of another config.
  """
  run = run_config(config, weights, seed)
  check_same_run(run, workdir)
  results = read_result(workdir)
  if results is not None:
    return results, False
  return train.train_and_evaluate(run, workdir, mesh), True


def run_name(label: str, seed: int) -> str:
  """The directory of one weighting's run with one seed."""
  return f'{label}_s{seed}'
