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

Every candidate of a search starts from the same initial parameters and sees
the same batches in the same order (and the same dropout masks): the
fitness of two weightings then differs by the weighting alone, not by
initialisation or data luck (common random numbers), which a 100-evaluation
search needs to tell weightings apart.

Writes to the workdir:
  evolution_history.jsonl  one line per evaluated candidate (weights,
                           fitness, parent, generation); a rerun resumes
                           from it and never retrains a candidate in it.
  best_weights.json        the fittest weighting, in the format of
                           `config.loss_weights_file`.
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
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import metric_writers
from jax.sharding import NamedSharding, PartitionSpec as P
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax.training import evaluation as eval_lib
from airstreams_jax import atomic_write
from airstreams_jax.data import pipeline
from airstreams_jax.evolution import figure
from airstreams_jax.evolution import search as search_lib
from airstreams_jax.training import losses
from airstreams_jax.training import setup as setup_lib
from airstreams_jax.training import train

BEST_FILE = 'best_weights.json'
GROUP_STEPS = ('auto', 'vmap', 'sequential')
# What the proxy trainings of a search were: a resumed search must train its
# remaining candidates the same way, or their fitness would not compare.
PROXY_FILE = 'evolution_proxy.json'
# Config keys that do not change a proxy training's result: the search
# settings (checked by replaying the history; num_evaluations may grow), the
# weights (each candidate brings its own), logging, checkpoints, layout.
_NOT_PROXY = ('evolution', 'loss_weights', 'loss_weights_file',
              'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
              'keep_checkpoints', 'best_metric', 'mesh', 'sharding_rules',
              'eval_batch_size')
# Where the data lives, not what it is.
_NOT_PROXY_DATASET = ('data_dir', 'manual_dir', 'build_workers')
TOP_FILE = 'top5_weights.json'
TOP_K = 5
# One colour per loss term in `losses.LOSS_NAMES` order: the bars of the
# top-5 image, as in the PNG figure.
TERM_COLOURS = np.array(figure.TERM_COLOURS, np.uint8)


def settings_from_config(config) -> search_lib.Settings:
  """The search settings of `config.evolution`, checked.

  Raises:
    errors.ConfigError: naming the key to fix.
  """
  settings = search_lib.Settings.from_config(config.evolution,
                                            losses.LOSS_NAMES)
  try:
    settings.check()
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  if config.evolution.proxy_steps < 1:
    raise errors.ConfigError(
        f'config.evolution.proxy_steps={config.evolution.proxy_steps} must '
        'be >= 1.')
  resolve_group_step(config)
  return settings


def resolve_group_step(config) -> str:
  """'vmap' or 'sequential': how a group's candidates train.

  `config.evolution.group_step` 'vmap' trains them in one vmapped step,
  which fills an accelerator; 'sequential' trains one candidate after the
  other with the ordinary train step, each on the same batches. 'auto' (the
  default) is 'sequential' on CPU, where vmapping makes grouped convolutions
  of the per-candidate kernels that XLA:CPU runs slowly (measured by
  `python -m airstreams_jax.tools.benchmark`: 2 candidates vmapped took 2.4x the time
  of 2 single steps), and 'vmap' elsewhere.

  Raises:
    errors.ConfigError: an unknown value.
  """
  mode = config.evolution.get('group_step', 'auto')
  if mode not in GROUP_STEPS:
    raise errors.ConfigError(
        f'config.evolution.group_step={mode!r} is unknown; use one of '
        f'{GROUP_STEPS}.')
  if mode == 'auto':
    return 'sequential' if jax.default_backend() == 'cpu' else 'vmap'
  return mode


def check_evolution(config) -> None:
  """The checks `evolve` makes of `config.evolution` before any data work.

  Raises:
    errors.ConfigError: one line naming the key and what it accepts.
  """
  settings_from_config(config)
  proxy_config(config)


def proxy_config(config):
  """The config of one proxy training.

  `num_train_steps` becomes `evolution.proxy_steps` (so warm-up and decay fit
  the short run), and with `evolution.holdout_percent` > 0 the proxies train
  on the first part of the training split and are evaluated on the rest.

  Raises:
    errors.ConfigError: a holdout that cannot be cut from the split.
  """
  proxy = config.copy_and_resolve_references()
  proxy.num_train_steps = config.evolution.proxy_steps
  holdout = config.evolution.holdout_percent
  if not 0 <= holdout < 100:
    raise errors.ConfigError(
        f'config.evolution.holdout_percent={holdout} must be in [0, 100) '
        '(0: evaluate on config.dataset.eval_split).')
  if holdout:
    split = config.dataset.train_split
    if '[' in split or '+' in split:
      raise errors.ConfigError(
          f'config.dataset.train_split={split!r} is already sliced; set '
          '--config.evolution.holdout_percent=0 and choose the proxy splits '
          'with --config.dataset.train_split/eval_split.')
    proxy.dataset.train_split = f'{split}[:{100 - holdout}%]'
    proxy.dataset.eval_split = f'{split}[{100 - holdout}%:]'
  return proxy


def candidate_shardings(state_sharding: Any) -> Any:
  """Shardings of stacked states: a leading, unsharded candidate axis in
  front of each array's own sharding (replicated for data parallelism)."""
  return jax.tree.map(
      lambda sh: NamedSharding(sh.mesh, P(None, *sh.spec)), state_sharding)


def group_step_shardings(s: setup_lib.Setup) -> Tuple[Any, Any]:
  """(in_shardings, out_shardings) of `jit_group_train_step`.

  Stacked states and their weights are replicated like a single state (the
  candidate axis is not split); the shared batch is split on 'data' exactly
  as in training.
  """
  stacked = candidate_shardings(s.state_sharding)
  return (stacked, s.batch_sharding, s.replicated), (stacked, s.replicated)


def jit_group_train_step(s: setup_lib.Setup) -> Callable[..., Any]:
  """One train step of G candidates: (states [G, ...], batch, weights [G, 5]).

  The batch is shared (not mapped); the stacked states are donated. Returns
  the new states and metrics with a leading candidate axis.

  With a data axis of several devices, XLA gathers the batch for the
  grouped convolutions that vmap makes of per-candidate kernels (measured
  on 8 CPU devices: 10x the time of a single step, against 2x on one
  device), so a search is fastest on one device per process.
  """
  group_step = jax.vmap(setup_lib.train_step_fn(s), in_axes=(0, None, 0))
  in_shardings, out_shardings = group_step_shardings(s)
  return jax.jit(group_step, in_shardings=in_shardings,
                 out_shardings=out_shardings, donate_argnums=0)


def jit_stack(s: setup_lib.Setup, group_size: int) -> Callable[[Any], Any]:
  """Copies one state into `group_size` stacked candidates."""
  def stack(state):
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x[None], (group_size,) + x.shape), state)
  return jax.jit(stack, out_shardings=candidate_shardings(s.state_sharding))


def jit_take(s: setup_lib.Setup) -> Callable[[Any, int], Any]:
  """Candidate i of stacked states, laid out as a single state."""
  take = jax.jit(lambda states, i: jax.tree.map(lambda x: x[i], states),
                 out_shardings=s.state_sharding)
  # A traced int32 index: one compile serves every candidate.
  return lambda states, i: take(states, jnp.asarray(i, jnp.int32))


def fitness_metric(config) -> str:
  """The key of `train.run_evaluation`'s results that ranks weightings."""
  return 'mAP' if config.model.multi_label else 'top1'


class ProxyTrainer:
  """Trains and evaluates groups of candidate weightings.

  With `group_step='vmap'` a group trains in one vmapped step, compiled
  once: groups smaller than `group_size` are padded with copies of their
  first weighting, whose results are dropped. With 'sequential' each
  candidate trains in turn with the ordinary train step, on the same batches
  (`resolve_group_step` says when which is faster).
  """

  def __init__(self, s: setup_lib.Setup, group_size: int,
               group_step: str = 'vmap'):
    if group_step not in ('vmap', 'sequential'):
      raise ValueError(f'group_step={group_step!r}: use vmap or sequential.')
    self.s = s
    self.group_size = group_size
    self.group_step = group_step
    # Kept, not donated: every group starts from these same values.
    self.initial = setup_lib.create_state(s)
    if s.config.init_from:  # E.g. Moments in Time weights for Charades.
      self.initial = setup_lib.initialise_from(s, self.initial,
                                           s.config.init_from)
    if group_step == 'vmap':
      self.stack = jit_stack(s, group_size)
      self.step = jit_group_train_step(s)
      self.take = jit_take(s)
    else:
      # A fresh copy of the initial state for each candidate: the train
      # step donates the state it is given.
      self.copy = jax.jit(lambda state: jax.tree.map(jnp.copy, state),
                          out_shardings=s.state_sharding)
      self.step = setup_lib.jit_train_step(s)
    self._eval = setup_lib.jit_eval_step(s)

  def _run(self, state: Any, weights: Any) -> Tuple[Any, Any]:
    """`proxy_steps` steps of `self.step` from `state` on the proxy's
    batches (the same sequence on every call); returns the state and the
    accumulated metrics on the host."""
    s = self.s
    ds = pipeline.make_train_dataset(
        s.builder, s.config.dataset,
        local_batch_size=pipeline.local_batch_size(s.config.batch_size),
        seed=s.config.seed, start_step=0, process_index=jax.process_index(),
        process_count=jax.process_count())
    batches = pipeline.global_batches(ds, s.batch_sharding)
    accumulated = None
    for _ in range(s.config.num_train_steps):
      state, step_metrics = self.step(state, next(batches), weights)
      accumulated = (step_metrics if accumulated is None
                     else accumulated.merge(step_metrics))
    return state, eval_lib.to_host(accumulated)

  def _train_vmapped(self, weights: np.ndarray) -> Tuple[List[Any], Any]:
    s, n = self.s, len(weights)
    padded = np.concatenate(
        [weights, np.repeat(weights[:1], self.group_size - n, axis=0)])
    padded = jax.device_put(padded.astype(np.float32), s.replicated)
    states, metrics = self._run(self.stack(self.initial), padded)
    return ([self.take(states, i) for i in range(n)],
            [jax.tree.map(lambda x, i=i: x[i], metrics) for i in range(n)])

  def _train_one(self, weights: np.ndarray) -> Tuple[Any, Any]:
    return self._run(self.copy(self.initial), jax.device_put(
        weights.astype(np.float32), self.s.replicated))

  def train(self, weights: np.ndarray) -> List[Any]:
    """Proxy-trains `weights` [n <= group_size, 5]; returns n states."""
    if self.group_step == 'vmap':
      states, metrics = self._train_vmapped(weights)
    else:
      states, metrics = zip(*[self._train_one(w) for w in weights])
    for w, m in zip(weights, metrics):
      loss = float(m.compute()['loss'])
      if not np.isfinite(loss):
        logging.warning('Proxy training with weights %s diverged (loss %s); '
                        'its accuracy will be low.', w, loss)
    return list(states)

  def evaluate(self, state: Any) -> Dict[str, Any]:
    """`train.run_evaluation` of one trained candidate."""
    return train.run_evaluation(self.s, state, self._eval)

  def __call__(self, group: Sequence[search_lib.Candidate]) -> List[float]:
    """The fitness of each candidate of a group."""
    start = time.time()
    states = self.train(np.asarray([c.weights for c in group]))
    metric = fitness_metric(self.s.config)
    fitness = [self.evaluate(state)[metric] for state in states]
    logging.info('Candidates %d-%d: %s %s in %.0f s.', group[0].id,
                 group[-1].id, metric,
                 ' '.join(f'{f:.4f}' for f in fitness), time.time() - start)
    return fitness


def top_weights_image(top: Sequence[search_lib.Candidate],
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


def _top_records(top: Sequence[search_lib.Candidate]) -> List[Dict[str, Any]]:
  return [dict(rank=r, id=c.id, fitness=c.fitness,
               weights=c.weights_dict(losses.LOSS_NAMES))
          for r, c in enumerate(top, 1)]


def _write_json(path: str, value: Any) -> None:
  # Whole or not at all: a later unit may read best_weights.json.
  atomic_write.write_whole(path, json.dumps(value, indent=2))


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

  def _write_figure(self, search: search_lib.Search) -> None:
    """The paper's Figure 5 (figure.py), replaced whole."""
    png = figure.png_bytes(
        [(c.id, c.fitness, c.weights) for c in search.top(TOP_K)],
        [c.fitness for c in search.history], losses.LOSS_NAMES, self.metric)
    atomic_write.write_whole(self.path(figure.FIGURE_FILE), png)

  def __call__(self, search: search_lib.Search,
               group: Sequence[search_lib.Candidate]) -> None:
    history = search.history
    if jax.process_index() == 0:
      # Rewritten whole: an interruption never leaves half a line behind.
      atomic_write.write_whole(
          self.path(search_lib.HISTORY_FILE),
          search_lib.format_history(history, losses.LOSS_NAMES))
      best = search.best()
      _write_json(self.path(BEST_FILE), best.weights_dict(losses.LOSS_NAMES))
      _write_json(self.path(TOP_FILE), _top_records(search.top(TOP_K)))
      self._write_figure(search)
    new_ids = {c.id for c in group}
    best_so_far = -np.inf
    for candidate in history:
      best_so_far = max(best_so_far,
                        search_lib.rank_key(candidate.fitness))
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
      logging.info('Evaluated %d of %d weightings (this group: %s); best %s '
                   '%s (candidate %d).', len(history),
                   search.settings.num_evaluations,
                   ', '.join(_fitness_text(c.fitness) for c in group),
                   self.metric, _fitness_text(best.fitness), best.id)


def _fitness_text(fitness: Optional[float]) -> str:
  return 'not finite' if fitness is None else f'{fitness:.3f}'


def _top_table(top: Sequence[search_lib.Candidate]) -> str:
  """A Markdown table of the top weightings (the image has no labels)."""
  names = losses.LOSS_NAMES
  lines = ['| rank | id | fitness | ' + ' | '.join(names) + ' |',
           '|---' * (3 + len(names)) + '|']
  for r, c in enumerate(top, 1):
    lines.append(f'| {r} | {c.id} | {c.fitness:.4f} | ' +
                 ' | '.join(f'{w:.3f}' for w in c.weights) + ' |')
  return '\n'.join(lines)


def proxy_description(proxy) -> Dict[str, Any]:
  """The settings of `proxy_config(config)` that decide a proxy's result."""
  described = json.loads(proxy.to_json_best_effort())
  for key in _NOT_PROXY:
    described.pop(key, None)
  for key in _NOT_PROXY_DATASET:
    described['dataset'].pop(key, None)
  return described


def _differences(a: Any, b: Any, prefix: str = '') -> List[str]:
  """Dotted keys whose values differ between two JSON-like trees."""
  if isinstance(a, dict) and isinstance(b, dict):
    return [d for k in sorted(set(a) | set(b))
            for d in _differences(a.get(k), b.get(k), f'{prefix}{k}.')]
  return [] if a == b else [prefix[:-1]]


def _check_same_proxy(path: str, described: Dict[str, Any]) -> None:
  with gfile.GFile(path) as f:
    stored = json.load(f)
  differ = _differences(stored, described)
  if differ:
    raise errors.ConfigError(
        f'{path}: this search\'s candidates were trained with other proxy '
        f'settings ({", ".join(differ[:5])} differ); use the config they were '
        'trained with, or another workdir.')


def _read_history(path: str, settings: search_lib.Settings
                  ) -> List[search_lib.Candidate]:
  if not gfile.exists(path):
    return []
  with gfile.GFile(path) as f:
    text = f.read()
  try:
    return search_lib.parse_history(text, settings.names)
  except ValueError as e:
    raise errors.ConfigError(f'{path}: {e}; fix or delete it.') from None


def evolve(config, workdir: str,
           mesh: Optional[jax.sharding.Mesh] = None,
           trainer: Optional[ProxyTrainer] = None) -> Dict[str, Any]:
  """Runs (or resumes) the search of the loss weights.

  Args:
    config: the experiment config with its `evolution` block.
    workdir: where the history, `best_weights.json`, `top5_weights.json` and
      TensorBoard events go; a search resumes from its history there.
    mesh: optional device mesh; by default built from `config.mesh`.
    trainer: optional, a `ProxyTrainer` for `proxy_config(config)` with
      groups of `config.evolution.parallel`, to reuse its compiled steps
      (e.g. several searches in one notebook); by default one is built.

  Returns:
    {'best': the best record, 'top5': the five best records (rank, id,
    fitness, weights), 'num_evaluated', 'num_trained' (in this run),
    'metric', 'best_weights_file'}.
  """
  settings = settings_from_config(config)
  proxy = proxy_config(config)
  gfile.makedirs(workdir)
  history_path = os.path.join(workdir, search_lib.HISTORY_FILE)
  history = _read_history(history_path, settings)
  try:
    search = search_lib.Search(settings, history)
  except ValueError as e:
    raise errors.ConfigError(f'{history_path}: {e}') from None
  proxy_path = os.path.join(workdir, PROXY_FILE)
  described = proxy_description(proxy)
  if history and gfile.exists(proxy_path):
    _check_same_proxy(proxy_path, described)
  elif jax.process_index() == 0:
    _write_json(proxy_path, described)
  if history:
    logging.info('Resuming the search: %d of %d weightings already '
                 'evaluated (%s).', len(history), settings.num_evaluations,
                 history_path)
  if jax.process_index() == 0:
    with gfile.GFile(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  outputs = _Outputs(workdir, fitness_metric(config))
  if search.done:  # Nothing to train: only rewrite the result files.
    outputs(search, [])
  else:
    group_step = resolve_group_step(config)
    if trainer is None:
      trainer = ProxyTrainer(setup_lib.setup(proxy, mesh), settings.parallel,
                             group_step)
    elif (trainer.s.config.to_json_best_effort(sort_keys=True) !=
          proxy.to_json_best_effort(sort_keys=True) or
          trainer.group_size != settings.parallel or
          trainer.group_step != group_step):
      raise ValueError('The trainer was built for another proxy config, '
                       'group size or group step than this search needs.')
    logging.info('Proxy training: %d steps; fitness: %s on %s; groups of %d '
                 'candidates (%s).', proxy.num_train_steps,
                 fitness_metric(config), proxy.dataset.eval_split,
                 settings.parallel, group_step)
    search_lib.run(search, trainer, outputs)
  best = search.best()
  return dict(best=_top_records([best])[0],
              top5=_top_records(search.top(TOP_K)),
              num_evaluated=len(search.history),
              num_trained=len(search.history) - len(history),
              metric=fitness_metric(config),
              best_weights_file=os.path.join(workdir, BEST_FILE))
