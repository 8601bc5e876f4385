r"""Throughput of vmapped proxy trainings against sequential ones.

  python -m experiments.bench_evolution [--config=configs/synthetic.py] \
      [--ks=1,2,5,10] [--rounds=5]

The evolution trains a group of K candidate weightings side by side: one
jitted step maps the train step over their stacked states
(`proxies.jit_group_train_step`). This measures, for each K, the wall time
of that step against K single-candidate train steps on the same batch, in
alternating rounds (the machine is shared and noisy, so both sides see the
same conditions), and prints the medians, the candidate-steps per second of
each and the speedup (K x single / group). Compile times are printed
separately. Runs on one device (a search is fastest with one device per
process: `proxies.jit_group_train_step` says why).
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from airstreams_jax.data import pipeline
from airstreams_jax.evolution import proxies
from airstreams_jax.launch import sweep as sweep_lib
from airstreams_jax.training import losses
from airstreams_jax.training import train

_CONFIG = flags.DEFINE_string(
    'config', 'configs/synthetic.py', 'Config file[:arg] of the proxies.')
_KS = flags.DEFINE_list('ks', ['1', '2', '5', '10'], 'Group sizes.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Timed rounds per K.')


def _timed(fn):
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def bench(s: train.Setup, batch, k: int, rounds: int):
  """(group compile s, single compile s, median group s, median K-single s)."""
  rng = np.random.default_rng(k)
  weights = jax.device_put(
      rng.uniform(0, 1, (k, len(losses.LOSS_NAMES))).astype(np.float32),
      s.replicated)
  initial = train.create_state(s)
  group_step = proxies.jit_group_train_step(s)
  single_step = train.jit_train_step(s)
  states = proxies.jit_stack(s, k)(initial)
  start = time.perf_counter()
  group_step = group_step.lower(states, batch, weights).compile()
  group_compile = time.perf_counter() - start
  single_state = train.create_state(s)
  start = time.perf_counter()
  single_step = single_step.lower(single_state, batch, weights[0]).compile()
  single_compile = time.perf_counter() - start

  holder = {'states': states, 'single': single_state}
  def run_group():
    holder['states'], metrics = group_step(holder['states'], batch, weights)
    return metrics
  def run_singles():
    # K sequential proxies: K steps of one candidate each.
    for i in range(k):
      holder['single'], metrics = single_step(holder['single'], batch,
                                              weights[i])
    return metrics
  _timed(run_group)  # Warm-up.
  _timed(run_singles)
  group_times, single_times = [], []
  for _ in range(rounds):  # Alternating, so both see the same load.
    group_times.append(_timed(run_group))
    single_times.append(_timed(run_singles))
  return (group_compile, single_compile, statistics.median(group_times),
          statistics.median(single_times))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = sweep_lib.load_config(_CONFIG.value)
  config.mesh = (('data', 1),)
  s = train.setup(proxies.proxy_config(config))
  ds = pipeline.make_train_dataset(
      s.builder, s.config.dataset,
      local_batch_size=pipeline.local_batch_size(s.config.batch_size),
      seed=0)
  batch = next(pipeline.global_batches(ds, s.batch_sharding))
  print(f'{_CONFIG.value}: batch {s.config.batch_size}, '
        f'{jax.devices()[0].device_kind}, {_ROUNDS.value} alternating rounds '
        '(medians)')
  print(f'{"K":>3} {"group step":>11} {"K single":>10} {"speedup":>8} '
        f'{"cand-steps/s vmap":>18} {"sequential":>11} {"compile":>16}')
  for k in (int(k) for k in _KS.value):
    group_compile, single_compile, group_s, singles_s = bench(
        s, batch, k, _ROUNDS.value)
    print(f'{k:>3} {group_s * 1e3:>9.0f}ms {singles_s * 1e3:>8.0f}ms '
          f'{singles_s / group_s:>7.2f}x {k / group_s:>18.2f} '
          f'{k / singles_s:>11.2f} {group_compile:>6.1f}s / '
          f'{single_compile:.1f}s')


if __name__ == '__main__':
  app.run(main)
