r"""Proxy fidelity: does the search's proxy rank weightings as full
training does?

  python -m airstreams_jax.tools.fidelity --config=configs/synthetic.py \
      --workdir=workdirs/fidelity [--weightings=8] [--repeats=3] \
      [--seeds=3] [--proxy_steps=40,80,160]

Takes K weightings (the config's, uniform, λ_merged alone, random ones
drawn as the search draws them; evolution/fidelity.py), scores each by the
search's proxy (`--repeats` proxy seeds at each of `--proxy_steps`,
evaluated on the search's holdout) and by full training (the config's
num_train_steps, `--seeds` seeds, test split), and writes to the workdir
  fidelity.md / fidelity.json  Spearman's ρ between proxy fitness and full
                               top-1 with a bootstrap interval per proxy
                               length, the proxies' between- and
                               within-weighting variance (SNR);
  fidelity.png                 proxy fitness against full top-1, ± SE bars,
                               one panel per proxy length.
Everything trained is kept: each proxy's result as a line of
fidelity_proxies.jsonl, each full training in full/<label>_s<seed> (resumed
from its checkpoint). A rerun, with more weightings, repeats, seeds or
lengths too, trains only what is missing; a workdir trained with another
config is refused. The settings are checked, and the plan printed in one
line, before any training.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import dataclasses
import json
import os
import sys
import time
from typing import Any, Dict, List, Sequence

from absl import flags
from absl import logging
import numpy as np
from ml_collections import config_flags
from tensorflow.io import gfile

from airstreams_jax import atomic_write
from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.evolution import fidelity
from airstreams_jax.evolution import full_runs
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.plotting import scatter
from airstreams_jax.training import config_checks
from airstreams_jax.training import losses
from airstreams_jax.training import preemption
from airstreams_jax.training import setup as setup_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config, as main\'s --config.',
      lock_config=True)
  flags.DEFINE_string('workdir', None, 'Where results are kept and the '
                      'report is written; a rerun resumes from it.')
  flags.DEFINE_integer('weightings', 8, 'K: weightings compared (>= 3).')
  flags.DEFINE_integer('repeats', 3, 'R: proxy seeds per weighting and '
                       'length (>= 2: the within-weighting variance).')
  flags.DEFINE_integer('seeds', 3, 'S: full-training seeds per weighting.')
  flags.DEFINE_string('proxy_steps', '', 'Proxy lengths, comma-separated, '
                      'e.g. 40,80,160; empty: config.evolution.proxy_steps.')
  flags.DEFINE_integer('bootstrap', 9999, 'Bootstrap resamples of ρ.')
  cli.define_jit_cache_flag()
  flags.declare_key_flag('jit_cache_dir')  # Listed in this command's --help.
  flags.mark_flags_as_required(['config', 'workdir'])


@dataclasses.dataclass(frozen=True)
class Options:
  weightings: int = 8
  repeats: int = 3
  seeds: int = 3
  proxy_steps: Sequence[int] = ()
  bootstrap: int = 9999


def parse_steps(text: str, default: int) -> List[int]:
  """'40,80,160' -> [40, 80, 160].

  Raises:
    errors.ConfigError: not positive whole numbers, or one given twice.
  """
  if not text.strip():
    return [int(default)]
  try:
    steps = [int(s) for s in text.split(',')]
  except ValueError:
    steps = []
  if not steps or min(steps) < 1 or len(set(steps)) != len(steps):
    raise errors.ConfigError(
        f'--proxy_steps={text!r} must be distinct whole numbers >= 1 '
        'separated by commas, e.g. --proxy_steps=40,80,160.')
  return steps


def check_options(options: Options) -> None:
  """Raises errors.ConfigError naming the flag to fix."""
  for flag, value, low, why in (
      ('weightings', options.weightings, fidelity.MIN_WEIGHTINGS,
       'below 3 every ranking correlates ±1'),
      ('repeats', options.repeats, 2, 'one repeat has no within-weighting '
       'variance'),
      ('seeds', options.seeds, 1, 'full trainings per weighting'),
      ('bootstrap', options.bootstrap, 100, 'resamples of the interval')):
    if value < low:
      raise errors.ConfigError(f'--{flag}={value} must be >= {low} ({why}).')


def _plan_record(config, plan: Sequence[fidelity.Weighting]
                 ) -> Dict[str, Any]:
  """What the kept results depend on: the full training's config (proxies
  are this config shortened, plus the holdout) and each label's weights."""
  return dict(training=dict(
      full_runs.description(config),
      holdout_percent=config.evolution.holdout_percent),
              weightings=[[w.label, list(w.weights)] for w in plan])


def _read(path: str) -> str:
  if not gfile.exists(path):
    return ''
  with gfile.GFile(path) as f:
    return f.read()


def _check_workdir(path: str, record: Dict[str, Any]) -> None:
  text = _read(path)
  problems = fidelity.merge_plans(json.loads(text) if text else None, record)
  if problems:
    raise errors.ConfigError(
        f'{path}: the results in this workdir were trained with other '
        f'settings ({", ".join(problems[:5])} differ); use the same config '
        'and flags, or another --workdir.')


class _Proxies:
  """The proxy results, kept in fidelity_proxies.jsonl after each run of
  one seed (a killed measurement loses at most that run)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, fidelity.PROXIES_FILE)
    try:
      scores = fidelity.parse_proxies(_read(self.path))
    except ValueError as e:
      raise errors.ConfigError(f'{self.path}: {e}; fix or delete it.') \
          from None
    self.scores = {s.key: s for s in scores}
    self.trained = 0

  def add(self, new: Sequence[fidelity.ProxyScore]) -> None:
    self.scores.update({s.key: s for s in new})
    self.trained += len(new)
    atomic_write.write_whole(self.path, fidelity.format_proxies(
        sorted(self.scores.values(), key=lambda s: s.key)))


def _score_proxies(config, steps: int, plan, repeats: int,
                   proxies: _Proxies) -> None:
  """Trains the proxies of this length that are not kept yet."""
  todo = [(r, w) for r in range(repeats) for w in plan
          if (steps, w.label, r) not in proxies.scores]
  if not todo:
    return
  trainer = proxy_trainer.ProxyTrainer(
      setup_lib.setup(proxy_trainer.proxy_config(config, steps)),
      config.evolution.parallel, proxy_trainer.resolve_group_step(config))
  metric = proxy_trainer.fitness_metric(config)
  group = config.evolution.parallel
  for r in range(repeats):
    pending = [w for rr, w in todo if rr == r]
    seed = int(config.seed) + r  # As the search's repeat r.
    for i in range(0, len(pending), group):
      chunk = pending[i:i + group]
      start = time.time()
      states = trainer.train(np.asarray([w.weights for w in chunk]), seed)
      new = []
      for w, state in zip(chunk, states):
        results = trainer.evaluate(state)
        value = float(results[metric])
        new.append(fidelity.ProxyScore(
            steps, w.label, r, seed, value if np.isfinite(value) else None,
            None if metric == 'mAP' else int(results['num_examples'])))
      proxies.add(new)
      logging.info('Proxies of %d steps, seed %d: %s in %.0f s.', steps, seed,
                   ', '.join(f'{s.label} ' + ('not finite' if s.fitness is
                                              None else f'{s.fitness:.4f}')
                             for s in new),
                   time.time() - start)


def _figure(summary, plan, metric: str) -> bytes:
  label = 'mAP' if metric == 'mAP' else 'top-1'
  panels = []
  for i, length in enumerate(summary['lengths']):
    points = [scatter.Point(
        x=_nan(length['proxy'][w.label]['mean']),
        y=_nan(summary['weightings'][w.label]['mean']),
        x_err=length['proxy'][w.label]['se'],
        y_err=summary['weightings'][w.label]['se'], label=w.label)
              for w in plan]
    rho = length['spearman']
    panels.append(scatter.Panel(
        f'proxy {length["steps"]} steps: rho = '
        + ('n/a' if rho is None else f'{rho:.2f}'), points, i))
  return scatter.png_bytes(
      panels, f'proxy fitness ({label} on the holdout)',
      f'full-training {label} (test)',
      'Proxy fidelity: mean +- SE per weighting')


def _nan(value):
  return float('nan') if value is None else value


def measure(config, workdir: str, options: Options) -> Dict[str, Any]:
  """Runs (or resumes) the measurement; returns the summary with
  'num_proxies_trained' and 'num_full_trained' (in this call).

  Raises:
    errors.ConfigError: bad options or config, or a workdir of other
      settings; before any training.
  """
  check_options(options)
  steps_list = list(options.proxy_steps) or [
      int(config.evolution.proxy_steps)]
  config_checks.check_config(config, make_builder=False)
  proxy_trainer.check_evolution(config)
  for steps in steps_list:
    proxy_trainer.proxy_config(config, steps)
  settings = proxy_trainer.settings_from_config(config)
  plan = fidelity.weightings(
      config_checks.read_loss_weights(config), options.weightings,
      settings.draw, settings.low, settings.high, settings.seed,
      merged_index=losses.LOSS_NAMES.index('merged'))
  gfile.makedirs(workdir)
  plan_path = os.path.join(workdir, fidelity.PLAN_FILE)
  record = _plan_record(config, plan)
  _check_workdir(plan_path, record)
  proxies = _Proxies(workdir)
  seeds = [int(config.seed) + s for s in range(options.seeds)]
  runs = {(w.label, s): os.path.join(workdir, fidelity.RUNS_DIR,
                                     full_runs.run_name(w.label, s))
          for w in plan for s in seeds}
  for (label, seed), run in runs.items():
    full_runs.check_same_run(full_runs.run_config(
        config, dict((w.label, w.weights) for w in plan)[label], seed), run)
  proxies_todo = sum((s, w.label, r) not in proxies.scores
                     for s in steps_list for w in plan
                     for r in range(options.repeats))
  full_todo = sum(full_runs.read_result(run) is None
                  for run in runs.values())
  print(f'Fidelity: {len(plan)} weightings ({", ".join(w.label for w in plan)})'
        f'; proxies of {", ".join(map(str, steps_list))} steps x '
        f'{options.repeats} repeats; full training {config.num_train_steps} '
        f'steps x {options.seeds} seeds, {config.dataset.eval_split} split. '
        f'To train: {proxies_todo} proxies, {full_todo} full trainings '
        f'(the rest are kept in {workdir}).', flush=True)
  atomic_write.write_whole(plan_path, json.dumps(record, indent=2))

  for steps in steps_list:
    _score_proxies(config, steps, plan, options.repeats, proxies)
  full_trained = 0
  full: Dict[str, List[float]] = {}
  metric = proxy_trainer.fitness_metric(config)
  for seed in seeds:  # Seed by seed: a partial measurement already pairs.
    for w in plan:
      results, now = full_runs.train_or_read(config, w.weights, seed,
                                             runs[(w.label, seed)])
      full_trained += now
      full.setdefault(w.label, []).append(float(results[metric]))

  scores = {steps: {w.label: [proxies.scores[(steps, w.label, r)].fitness
                              for r in range(options.repeats)]
                    for w in plan} for steps in steps_list}
  summary = fidelity.summarize([w.label for w in plan], scores, full,
                               n_resamples=options.bootstrap)
  summary.update(weights={w.label: list(w.weights) for w in plan},
                 metric=metric, repeats=options.repeats, seeds=seeds,
                 full_steps=int(config.num_train_steps))
  atomic_write.write_whole(os.path.join(workdir, fidelity.REPORT_JSON),
                           json.dumps(summary, indent=2))
  atomic_write.write_whole(
      os.path.join(workdir, fidelity.REPORT_MD), fidelity.report_markdown(
          summary, plan, losses.LOSS_NAMES, metric, options.repeats,
          options.seeds, int(config.num_train_steps)))
  atomic_write.write_whole(os.path.join(workdir, fidelity.FIGURE_FILE),
                           _figure(summary, plan, metric))
  return dict(summary, num_proxies_trained=proxies.trained,
              num_full_trained=full_trained)


def summary_line(summary: Dict[str, Any], workdir: str) -> str:
  rhos = ', '.join(
      f'{l["steps"]} steps: ρ ' + ('n/a' if l['spearman'] is None else
                                   f'{l["spearman"]:.2f} [{l["interval"][0]:.2f}, '
                                   f'{l["interval"][1]:.2f}]')
      for l in summary['lengths'])
  return (f'Proxy fidelity ({summary["num_proxies_trained"]} proxies and '
          f'{summary["num_full_trained"]} full trainings in this run): '
          f'{rhos}. Report: {os.path.join(workdir, fidelity.REPORT_MD)}')


def main() -> None:
  cli.use_jit_cache(FLAGS.jit_cache_dir)
  options = Options(weightings=FLAGS.weightings, repeats=FLAGS.repeats,
                    seeds=FLAGS.seeds, bootstrap=FLAGS.bootstrap,
                    proxy_steps=parse_steps(
                        FLAGS.proxy_steps,
                        FLAGS.config.evolution.proxy_steps))
  try:
    summary = measure(FLAGS.config, FLAGS.workdir, options)
  except preemption.Preempted as e:
    # Saved (a full training's checkpoint, every proxy so far): a clean
    # exit, as main's; the same command resumes.
    print(e, file=sys.stderr)
    return
  print(summary_line(summary, FLAGS.workdir))


if __name__ == '__main__':
  cli.run(main, define_flags, config_flag='config',
          one_line_errors=(errors.ConfigError,),
          log_file=lambda: os.path.join(FLAGS.workdir, 'fidelity.log'))
