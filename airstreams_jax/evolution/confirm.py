"""Confirms a finished search's answer by full training.

`confirm(config, workdir)` takes the search in `workdir` (its history),
trains its `evolution.confirm_top` best weightings and the config's own
(fixed) weights in full, each with the seeds config.seed + i for i <
`evolution.confirm_seeds` (the same seeds for every weighting: paired), and
writes
  evolution_report.md  each weighting's mean ± SE on the test split, its
                       paired difference to the fixed weights, and whether
                       the search's best beats them beyond noise
                       (confirmation.py);
  best_weights.json    the search's best, as before, with that verdict
                       under 'confirmation' (training ignores the key).
The runs live in WORKDIR/confirmation/<label>_s<seed>; a rerun reads the
finished ones and resumes the others (full_runs.py).

The proxies rank weightings after a few hundred steps on a holdout; full
training is what the weights are for, so only it can say whether the
search's answer is better than the hand-set one or a draw that the proxies'
noise crowned.
"""

import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
from absl import logging
from tensorflow.io import gfile

from airstreams_jax import atomic_write
from airstreams_jax import errors
from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import confirmation
from airstreams_jax.evolution import evolve as evolve_lib
from airstreams_jax.evolution import full_runs
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.evolution import runner
from airstreams_jax.training import config_checks
from airstreams_jax.training import losses

REPORT_FILE = 'evolution_report.md'
RUNS_DIR = 'confirmation'
FIXED = 'fixed'


def check(config) -> Tuple[int, int]:
  """(seeds, top) of a confirmation, checked before any training.

  Raises:
    errors.ConfigError: confirm_seeds is 0 (nothing to confirm with).
  """
  settings = proxy_trainer.settings_from_config(config)
  if settings.confirm_seeds < 2:
    raise errors.ConfigError(
        f'config.evolution.confirm_seeds={settings.confirm_seeds}: the '
        'confirmation needs >= 2 seeds; set e.g. '
        '--config.evolution.confirm_seeds=3.')
  config_checks.read_loss_weights(config)
  return settings.confirm_seeds, settings.confirm_top


def finished_search(config, workdir: str) -> runner.AnySearch:
  """The search written in `workdir`, which must have ended.

  Raises:
    errors.ConfigError: no history there, or a search not finished.
  """
  settings = proxy_trainer.settings_from_config(config)
  path = os.path.join(workdir, candidates_lib.HISTORY_FILE)
  history = evolve_lib.read_history(path, settings.names)
  if not history:
    raise errors.ConfigError(
        f'{path} does not exist: --workdir must hold a search; run '
        '--mode=evolve there first.')
  try:
    search = runner.make_search(settings, history)
  except ValueError as e:
    raise errors.ConfigError(f'{path}: {e}') from None
  if not search.done:
    raise errors.ConfigError(
        f'the search in {workdir} has evaluated {len(search.history)} of '
        f'{settings.num_evaluations} weightings; finish it first with the '
        'same command and --mode=evolve.')
  return search


def _label(candidate: candidates_lib.Candidate) -> str:
  return f'candidate_{candidate.id}'


def confirm(config, workdir: str,
            mesh: Optional[jax.sharding.Mesh] = None) -> Dict[str, Any]:
  """Trains the search's best and the fixed weights in full; writes the
  report and the verdict (see the module docstring).

  Returns:
    best_weights.json's 'confirmation' record, plus 'num_trained' (full
    trainings in this call), 'report_file' and 'best_weights_file'.

  Raises:
    errors.ConfigError: bad settings or no finished search in `workdir`
      (before any training).
  """
  num_seeds, top = check(config)
  search = finished_search(config, workdir)
  fixed = tuple(float(w) for w in config_checks.read_loss_weights(config))
  seeds = [int(config.seed) + i for i in range(num_seeds)]
  names = losses.LOSS_NAMES
  plan: List[Tuple[str, Tuple[float, ...], Optional[float]]] = [
      (_label(c), tuple(c.weights), c.fitness) for c in search.top(top)]
  plan.append((FIXED, fixed, None))
  logging.info('Confirmation: %d weightings (the search\'s best %d and the '
               'fixed weights) x %d seeds (%s) of full training, in %s.',
               len(plan), len(plan) - 1, num_seeds,
               ', '.join(map(str, seeds)), os.path.join(workdir, RUNS_DIR))
  metric = proxy_trainer.fitness_metric(config)
  values: Dict[str, List[float]] = {}
  trained = 0
  for seed in seeds:  # Seed by seed: a partial run already pairs.
    for label, weights, _ in plan:
      start = time.time()
      results, now = full_runs.train_or_read(
          config, weights, seed,
          os.path.join(workdir, RUNS_DIR, full_runs.run_name(label, seed)),
          mesh)
      trained += now
      values.setdefault(label, []).append(float(results[metric]))
      if now:
        logging.info('Confirmation: %s, seed %d: %s %.4f in %.0f s.', label,
                     seed, metric, results[metric], time.time() - start)
  entries = [confirmation.Entry(label, weights, values[label], proxy)
             for label, weights, proxy in plan]
  table = confirmation.rows(entries[:-1], entries[-1])
  report_path = os.path.join(workdir, REPORT_FILE)
  best_path = os.path.join(workdir, evolve_lib.BEST_FILE)
  record = confirmation.record(table, seeds, REPORT_FILE)
  if jax.process_index() == 0:
    atomic_write.write_whole(report_path, confirmation.report_markdown(
        table, names, metric, seeds))
    best = dict(search.best().weights_dict(names), confirmation=record)
    atomic_write.write_whole(best_path, json.dumps(best, indent=2))
  return dict(record, num_trained=trained, report_file=report_path,
              best_weights_file=best_path)


def summary_line(result: Dict[str, Any]) -> str:
  """main's last line after a confirmation."""
  return (f"Confirmation ({result['num_trained']} full trainings in this "
          f"run): {result['candidate']} {result['verdict']} "
          f"({100 * result['difference']:+.2f} ± "
          f"{100 * result['difference_se']:.2f} points over "
          f"{len(result['seeds'])} seeds). Report: {result['report_file']}")


def read_record(workdir: str) -> Optional[Dict[str, Any]]:
  """The verdict in a search's best_weights.json; None before any."""
  path = os.path.join(workdir, evolve_lib.BEST_FILE)
  if not gfile.exists(path):
    return None
  with gfile.GFile(path) as f:
    return json.load(f).get('confirmation')
