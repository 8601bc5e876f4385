"""Evolution of the five loss weights with vmapped proxy trainings.

`evolve(config, workdir)` runs the search of `search.py`: each candidate
weighting trains a proxy model (this config, for `config.evolution.
proxy_steps` steps, with the learning-rate schedule fitted to that length)
and its fitness is the merged head's top-1 accuracy (mAP for multi-label
data) on held-out videos. The candidates of a group train side by side: one
jitted step maps `steps.train_step` over their stacked states and weights
with `jax.vmap`, all on the same batch, so a group of G costs one compile.

The held-out videos are, by default, the last `holdout_percent` % of the
training split, on which the proxies do not train: the weights are then not
tuned on the test split that final results are reported on.

A candidate's fitness is the mean of `evolution.proxy_repeats` proxy
trainings, repeat r with the seed `config.seed` + r for every candidate
(common random numbers: two weightings' means differ by the weighting, not
by initialisation or data luck), and a child that would become the best is
first raced with `evolution.race_repeats` more (tournament.py).

Writes to the workdir:
  evolution_history.jsonl  one line per evaluated candidate (weights,
                           every evaluation with its seed, the mean fitness,
                           its standard error and the holdout's binomial
                           one, parent, generation); a rerun resumes from
                           it and never retrains an evaluation in it.
  best_weights.json        the fittest weighting, in the format of
                           `config.loss_weights_file`; after a
                           confirmation (confirm.py) also its verdict.
  top5_weights.json        the five fittest (the paper's Figure 5).
  evolution_figure.png     Figure 5: the top-5 weightings' bars and the
                           fitness of every evaluation (figure.py).
  evolution_proxy.json     what defines the proxy training; a resumed
                           search with a different one is refused.
  events.out.tfevents.*    fitness and best fitness per evaluation, and the
                           top-5 weightings as a bar image.
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import jax
import numpy as np
from absl import logging
from clu import metric_writers
from tensorflow.io import gfile

from airstreams_jax import atomic_write
from airstreams_jax import errors
from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import figure
from airstreams_jax.evolution import full_runs
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.evolution import runner
from airstreams_jax.training import losses
from airstreams_jax.training import setup as setup_lib


BEST_FILE = 'best_weights.json'


# What the proxy trainings of a search were: a resumed search must train its
# remaining candidates the same way, or their fitness would not compare.
PROXY_FILE = 'evolution_proxy.json'


TOP_FILE = 'top5_weights.json'


TOP_K = 5


# One colour per loss term in `losses.LOSS_NAMES` order: the bars of the
# top-5 image, as in the PNG figure.
TERM_COLOURS = np.array(figure.TERM_COLOURS, np.uint8)


def top_weights_image(top: Sequence[candidates_lib.Candidate],
                      bar_width: int = 14, height: int = 120) -> np.ndarray:
  """The paper's Figure 5 as an image: bars of each weighting's λ.

  One panel per weighting, fittest first, left to right; in each panel one
  bar per loss term in `losses.LOSS_NAMES` order, coloured by
  `TERM_COLOURS`, as tall as the weight (the grey lines mark 0.5 and 1).

  Returns:
    uint8 [H, W, 3].
  """
  gap, margin = bar_width // 2, 6
  num_terms = len(losses.LOSS_NAMES)
  panel_width = num_terms * (bar_width + gap) + gap
  image = np.full((height + 2 * margin, len(top) * panel_width + 1, 3), 255,
                  np.uint8)
  base = margin + height  # Row of weight 0.
  for level in (0.5, 1.0):
    image[base - int(round(level * height)), :] = 200
  for p, candidate in enumerate(top):
    left = p * panel_width
    image[:, left] = 120  # Panel separator.
    for t, weight in enumerate(candidate.weights):
      x = left + gap + t * (bar_width + gap)
      top_row = base - int(round(float(np.clip(weight, 0, 1)) * height))
      image[top_row:base, x:x + bar_width] = TERM_COLOURS[t]
  image[:, -1] = 120
  image[base, :] = 0  # The zero line.
  return image


def _top_records(top: Sequence[candidates_lib.Candidate]
                 ) -> List[Dict[str, Any]]:
  return [dict(rank=r, id=c.id, fitness=c.fitness, se=c.se,
               holdout_se=c.holdout_se, repeats=len(c.at_rung()),
               weights=c.weights_dict(losses.LOSS_NAMES))
          for r, c in enumerate(top, 1)]


def _write_json(path: str, value: Any) -> None:
  # Whole or not at all: a later unit may read best_weights.json.
  atomic_write.write_whole(path, json.dumps(value, indent=2))


def _write_best(path: str, weights: Dict[str, float]) -> None:
  """best_weights.json; a confirmation's verdict on these same weights
  (confirm.py) stays in it when a finished search rewrites its files."""
  record = None
  if gfile.exists(path):
    try:
      with gfile.GFile(path) as f:
        old = json.load(f)
      if {k: old.get(k) for k in weights} == weights:
        record = old.get('confirmation')
    except (ValueError, AttributeError):  # Unreadable: written anew.
      pass
  _write_json(path, weights if record is None
              else dict(weights, confirmation=record))


class _Outputs:
  """The history file, best and top-5 files and TensorBoard, kept current
  after every group (process 0 writes; the others only log)."""

  def __init__(self, workdir: str, metric: str):
    self.workdir = workdir
    self.metric = metric
    self.writer = metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0)

  def path(self, name: str) -> str:
    return os.path.join(self.workdir, name)

  def _write_figure(self, search: runner.AnySearch) -> None:
    """The paper's Figure 5 (figure.py), replaced whole."""
    png = figure.png_bytes(
        [(c.id, c.fitness, c.weights) for c in search.top(TOP_K)],
        [c.fitness for c in search.history], losses.LOSS_NAMES, self.metric)
    atomic_write.write_whole(self.path(figure.FIGURE_FILE), png)

  def __call__(self, search: runner.AnySearch,
               group: Sequence[candidates_lib.Candidate]) -> None:
    history = search.history
    if jax.process_index() == 0:
      # Rewritten whole: an interruption never leaves half a line behind.
      atomic_write.write_whole(
          self.path(candidates_lib.HISTORY_FILE),
          candidates_lib.format_history(history, losses.LOSS_NAMES))
      best = search.best()
      _write_best(self.path(BEST_FILE), best.weights_dict(losses.LOSS_NAMES))
      _write_json(self.path(TOP_FILE), _top_records(search.top(TOP_K)))
      self._write_figure(search)
    new_ids = {c.id for c in group}
    best_so_far = -np.inf
    for candidate in history:
      best_so_far = max(best_so_far,
                        candidates_lib.rank_key(candidate.fitness))
      if candidate.id in new_ids:
        self.writer.write_scalars(candidate.id + 1, {
            'evolution/fitness': candidate.fitness,
            'evolution/best_fitness': best_so_far})
    top = search.top(TOP_K)
    self.writer.write_images(len(history), {
        'evolution/top5_weights': top_weights_image(top)[None]})
    self.writer.write_texts(len(history), {
        'evolution/top5_weights': _top_table(top)})
    self.writer.flush()
    if group:  # The console's progress line of the search.
      best = search.best()
      logging.info('Evaluated %d of %d weightings (this batch: %s); best %s '
                   '%s (candidate %d).', len(history),
                   search.settings.num_evaluations,
                   ', '.join(f'{c.id}: {_fitness_text(c)}' for c in group),
                   self.metric, _fitness_text(best), best.id)


def _fitness_text(candidate: candidates_lib.Candidate) -> str:
  """The mean, with its standard error over the repeats when there is one."""
  if candidate.fitness is None:
    return 'not finite'
  se = '' if candidate.se is None else f' ± {candidate.se:.3f}'
  return f'{candidate.fitness:.3f}{se} ({len(candidate.at_rung())}x)'


def _top_table(top: Sequence[candidates_lib.Candidate]) -> str:
  """A Markdown table of the top weightings (the image has no labels)."""
  names = losses.LOSS_NAMES
  lines = ['| rank | id | fitness | ' + ' | '.join(names) + ' |',
           '|---' * (3 + len(names)) + '|']
  for r, c in enumerate(top, 1):
    lines.append(f'| {r} | {c.id} | {_fitness_text(c)} | ' +
                 ' | '.join(f'{w:.3f}' for w in c.weights) + ' |')
  return '\n'.join(lines)


def _check_same_proxy(path: str, described: Dict[str, Any]) -> None:
  with gfile.GFile(path) as f:
    stored = json.load(f)
  differ = full_runs.differences(stored, described)
  if differ:
    raise errors.ConfigError(
        f'{path}: this search\'s candidates were trained with other proxy '
        f'settings ({", ".join(differ[:5])} differ); use the config they were '
        'trained with, or another workdir.')


def read_history(path: str, names: Sequence[str]
                  ) -> List[candidates_lib.Candidate]:
  if not gfile.exists(path):
    return []
  with gfile.GFile(path) as f:
    text = f.read()
  try:
    return candidates_lib.parse_history(text, names)
  except ValueError as e:
    raise errors.ConfigError(f'{path}: {e}; fix or delete it.') from None


class _Trainers:
  """Answers a batch of jobs with a `proxy_trainer.ProxyTrainer` per proxy
  length (one in a tournament; one per rung with successive halving), each
  built on first use."""

  def __init__(self, config, settings, mesh, trainer):
    self.config, self.settings, self.mesh = config, settings, mesh
    self.group_step = proxy_trainer.resolve_group_step(config)
    self.by_steps = {}
    self.trained = 0
    if trainer is not None:
      self._check(trainer, proxy_trainer.proxy_config(config))
      self.by_steps[settings.proxy_steps] = trainer

  def _check(self, trainer, proxy) -> None:
    if (trainer.s.config.to_json_best_effort(sort_keys=True) !=
        proxy.to_json_best_effort(sort_keys=True) or
        trainer.group_size != self.settings.parallel or
        trainer.group_step != self.group_step):
      raise ValueError('The trainer was built for another proxy config, '
                       'group size or group step than this search needs.')

  def _trainer(self, steps: int) -> proxy_trainer.ProxyTrainer:
    if steps not in self.by_steps:
      proxy = proxy_trainer.proxy_config(self.config, steps)
      logging.info(
          'Proxy training: %d steps; fitness: %s on %s; groups of %d '
          'candidates (%s).', steps, proxy_trainer.fitness_metric(proxy),
          proxy.dataset.eval_split, self.settings.parallel, self.group_step)
      self.by_steps[steps] = proxy_trainer.ProxyTrainer(
          setup_lib.setup(proxy, self.mesh), self.settings.parallel,
          self.group_step)
    return self.by_steps[steps]

  def __call__(self, jobs: Sequence[candidates_lib.Job]):
    answers = [None] * len(jobs)
    for steps in dict.fromkeys(j.steps for j in jobs):
      indices = [i for i, j in enumerate(jobs) if j.steps == steps]
      for i, answer in zip(indices, self._trainer(steps)(
          [jobs[i] for i in indices])):
        answers[i] = answer
    self.trained += len(jobs)
    return answers


def evolve(config, workdir: str,
           mesh: Optional[jax.sharding.Mesh] = None,
           trainer: Optional[proxy_trainer.ProxyTrainer] = None) -> Dict[str, Any]:
  """Runs (or resumes) the search of the loss weights.

  Args:
    config: the experiment config with its `evolution` block.
    workdir: where the history, `best_weights.json`, `top5_weights.json` and
      TensorBoard events go; a search resumes from its history there.
    mesh: optional device mesh; by default built from `config.mesh`.
    trainer: optional, a `proxy_trainer.ProxyTrainer` for
      `proxy_trainer.proxy_config(config)` with
      groups of `config.evolution.parallel`, to reuse its compiled steps
      (e.g. several searches in one notebook); by default one is built.

  Returns:
    {'best': the best record, 'top5': the five best records (rank, id,
    fitness, se, holdout_se, repeats, weights), 'num_evaluated'
    (weightings), 'num_trained' (proxy trainings in this run), 'metric',
    'best_weights_file'}.
  """
  settings = proxy_trainer.settings_from_config(config)
  proxy = proxy_trainer.proxy_config(config)
  gfile.makedirs(workdir)
  history_path = os.path.join(workdir, candidates_lib.HISTORY_FILE)
  history = read_history(history_path, settings.names)
  # Proxies that would train differently are named key by key, before the
  # replay below would only say that the history is not this search's.
  proxy_path = os.path.join(workdir, PROXY_FILE)
  described = proxy_trainer.proxy_description(proxy)
  if history and gfile.exists(proxy_path):
    _check_same_proxy(proxy_path, described)
  try:
    search = runner.make_search(settings, history)
  except ValueError as e:
    raise errors.ConfigError(f'{history_path}: {e}') from None
  if not (history and gfile.exists(proxy_path)) and jax.process_index() == 0:
    _write_json(proxy_path, described)
  if history:
    logging.info('Resuming the search: %d of %d weightings already '
                 'evaluated (%s).', len(history), settings.num_evaluations,
                 history_path)
  if jax.process_index() == 0:
    with gfile.GFile(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  outputs = _Outputs(workdir, proxy_trainer.fitness_metric(config))
  trainers = _Trainers(config, settings, mesh, trainer)
  if search.done:  # Nothing to train: only rewrite the result files.
    outputs(search, [])
  else:
    runner.run(search, trainers, outputs)
  best = search.best()
  return dict(best=_top_records([best])[0],
              top5=_top_records(search.top(TOP_K)),
              num_evaluated=len(search.history),
              num_trained=trainers.trained,
              metric=proxy_trainer.fitness_metric(config),
              best_weights_file=os.path.join(workdir, BEST_FILE))
