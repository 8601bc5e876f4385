"""The proxy trainings that give the evolution's candidates their fitness.

`ProxyTrainer` trains each candidate weighting for `config.evolution.
proxy_steps` steps (`proxy_config`: this config, with the learning-rate
schedule fitted to that length) and evaluates the merged head's top-1
accuracy (mAP for multi-label data) on held-out videos: by default the last
`holdout_percent` % of the training split, on which the proxies do not
train, so the weights are not tuned on the test split that final results
are reported on. The candidates of a group train side by side, either in one
vmapped step (`jax.vmap` of `steps.train_step` over their stacked states and
weights, on the same batch: a group of G costs one compile) or one after
the other (`resolve_group_step` says which is faster where).

Each job of the search names a repeat's proxy seed: the training starts
from the parameters that seed initialises and sees the batches (and dropout
masks) it orders. Every candidate is trained with the same seeds, so the
fitness of two weightings differs by the weighting, not by initialisation
or data luck (common random numbers, paired across candidates), and the
spread over a candidate's repeats measures that luck. The candidates of a
group that share a seed train side by side; repeats differ in their batches,
so they are separate runs (`seed_runs`). `evolve.py` drives the search.
"""

import json
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from airstreams_jax import errors
from airstreams_jax.training import evaluation as eval_lib
from airstreams_jax.data import pipeline
from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import settings as settings_lib
from airstreams_jax.training import config_checks
from airstreams_jax.training import losses
from airstreams_jax.training import setup as setup_lib
from airstreams_jax.training import train

GROUP_STEPS = ('auto', 'vmap', 'sequential')
# Config keys that do not change a proxy training's result: the search
# settings (checked by replaying the history; num_evaluations may grow), the
# weights (each candidate brings its own), logging, checkpoints, layout.
_NOT_PROXY = ('evolution', 'loss_weights', 'loss_weights_file',
              'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
              'keep_checkpoints', 'best_metric', 'mesh', 'sharding_rules',
              'eval_batch_size')
# Where the data lives, not what it is.
_NOT_PROXY_DATASET = ('data_dir', 'manual_dir', 'build_workers')


def settings_from_config(config) -> settings_lib.Settings:
  """The search settings of `config.evolution`, checked; repeat r of every
  candidate trains with proxy seed `config.seed` + r, and with
  `evolution.start_from_config` the config's own loss weights (its
  `loss_weights` or `loss_weights_file`) join the first generation.

  Raises:
    errors.ConfigError: naming the key to fix.
  """
  initial = (config_checks.read_loss_weights(config)
             if config.evolution.start_from_config else None)
  try:
    settings = settings_lib.Settings.from_config(
        config.evolution, losses.LOSS_NAMES, initial_weights=initial,
        proxy_seed=config.seed)
    settings.check()
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(str(e)) from None
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


def proxy_config(config, steps: Optional[int] = None):
  """The config of one proxy training.

  `num_train_steps` becomes `steps` (`evolution.proxy_steps` by default; so
  warm-up and decay fit the short run), and with `evolution.holdout_percent`
  > 0 the proxies train on the first part of the training split and are
  evaluated on the rest.

  Raises:
    errors.ConfigError: a holdout that cannot be cut from the split.
  """
  proxy = config.copy_and_resolve_references()
  proxy.num_train_steps = steps or config.evolution.proxy_steps
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


def seed_runs(seeds: Sequence[int],
              group_size: int) -> List[Tuple[int, List[int]]]:
  """How a batch of jobs trains: (seed, indices of the jobs) per run, each
  run at most `group_size` jobs of one seed (they share initial parameters
  and batches, so a vmapped step can train them side by side), seeds in
  order of first appearance."""
  runs = []
  for seed in dict.fromkeys(seeds):
    indices = [i for i, s in enumerate(seeds) if s == seed]
    runs += [(seed, indices[i:i + group_size])
             for i in range(0, len(indices), group_size)]
  return runs


class ProxyTrainer:
  """Trains and evaluates the proxy trainings a search asks for.

  Jobs of one seed train together (`seed_runs`). With `group_step='vmap'`
  they train in one vmapped step, compiled once: runs smaller than
  `group_size` are padded with copies of their first weighting, whose
  results are dropped. With 'sequential' each candidate trains in turn with
  the ordinary train step, on the same batches (`resolve_group_step` says
  when which is faster).
  """

  def __init__(self, s: setup_lib.Setup, group_size: int,
               group_step: str = 'vmap'):
    if group_step not in ('vmap', 'sequential'):
      raise ValueError(f'group_step={group_step!r}: use vmap or sequential.')
    self.s = s
    self.group_size = group_size
    self.group_step = group_step
    self._init = setup_lib.jit_init(s)
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

  def initial(self, seed: int) -> Any:
    """The state every candidate of proxy seed `seed` starts from (a fresh
    one per run: the steps donate it)."""
    state = self._init(seed)
    if self.s.config.init_from:  # E.g. Moments in Time weights for Charades.
      state = setup_lib.initialise_from(self.s, state,
                                        self.s.config.init_from)
    return state

  def _run(self, state: Any, weights: Any, seed: int) -> Tuple[Any, Any]:
    """`num_train_steps` steps of `self.step` from `state` on the batches
    of proxy seed `seed` (the same sequence on every call with it); returns
    the state and the accumulated metrics on the host."""
    s = self.s
    ds = pipeline.make_train_dataset(
        s.builder, s.config.dataset,
        local_batch_size=pipeline.local_batch_size(s.config.batch_size),
        seed=seed, start_step=0, process_index=jax.process_index(),
        process_count=jax.process_count())
    batches = pipeline.global_batches(ds, s.batch_sharding)
    accumulated = None
    for _ in range(s.config.num_train_steps):
      state, step_metrics = self.step(state, next(batches), weights)
      accumulated = (step_metrics if accumulated is None
                     else accumulated.merge(step_metrics))
    return state, eval_lib.to_host(accumulated)

  def _train_vmapped(self, weights: np.ndarray,
                     seed: int) -> Tuple[List[Any], Any]:
    s, n = self.s, len(weights)
    padded = np.concatenate(
        [weights, np.repeat(weights[:1], self.group_size - n, axis=0)])
    padded = jax.device_put(padded.astype(np.float32), s.replicated)
    states, metrics = self._run(self.stack(self.initial(seed)), padded, seed)
    return ([self.take(states, i) for i in range(n)],
            [jax.tree.map(lambda x, i=i: x[i], metrics) for i in range(n)])

  def _train_one(self, initial: Any, weights: np.ndarray,
                 seed: int) -> Tuple[Any, Any]:
    return self._run(self.copy(initial), jax.device_put(
        weights.astype(np.float32), self.s.replicated), seed)

  def train(self, weights: np.ndarray, seed: int) -> List[Any]:
    """Proxy-trains `weights` [n <= group_size, 5] with proxy seed `seed`;
    returns n states."""
    if self.group_step == 'vmap':
      states, metrics = self._train_vmapped(weights, seed)
    else:
      # Kept, not donated: each candidate starts from a copy.
      initial = self.initial(seed)
      states, metrics = zip(*[self._train_one(initial, w, seed)
                              for w in weights])
    for w, m in zip(weights, metrics):
      loss = float(m.compute()['loss'])
      if not np.isfinite(loss):
        logging.warning('Proxy training with weights %s diverged (loss %s); '
                        'its accuracy will be low.', w, loss)
    return list(states)

  def evaluate(self, state: Any) -> Dict[str, Any]:
    """`train.run_evaluation` of one trained candidate."""
    return train.run_evaluation(self.s, state, self._eval)

  def __call__(self, jobs: Sequence[candidates_lib.Job]
               ) -> List[Tuple[float, Optional[int]]]:
    """(fitness, held-out examples; None for mAP) of each job, all of
    this trainer's proxy length."""
    metric = fitness_metric(self.s.config)
    answers = [None] * len(jobs)
    for seed, indices in seed_runs([j.seed for j in jobs], self.group_size):
      start = time.time()
      states = self.train(np.asarray([jobs[i].candidate.weights
                                      for i in indices]), seed)
      for i, state in zip(indices, states):
        results = self.evaluate(state)
        answers[i] = (float(results[metric]), None if metric == 'mAP'
                      else int(results['num_examples']))
      logging.info('Candidates %s, proxy seed %d: %s %s in %.0f s.',
                   ', '.join(str(jobs[i].candidate.id) for i in indices),
                   seed, metric, ' '.join(f'{answers[i][0]:.4f}'
                                          for i in indices),
                   time.time() - start)
    return answers


def proxy_description(proxy) -> Dict[str, Any]:
  """The settings of `proxy_config(config)` that decide a proxy's result."""
  described = json.loads(proxy.to_json_best_effort())
  for key in _NOT_PROXY:
    described.pop(key, None)
  for key in _NOT_PROXY_DATASET:
    described['dataset'].pop(key, None)
  return described


