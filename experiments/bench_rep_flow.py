"""Benchmarks the representation-flow layer: compile, forward, forward+backward.

Usage (from the repository root):
  python -m experiments.bench_rep_flow [--repeats=N]

Prints, per configuration, the compile time (tracing, lowering and XLA
compilation) of the jitted forward and of the jitted forward+backward (gradient w.r.t. the parameters and the input), and
the median wall time of several runs after compilation.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from airstreams_jax.models import rep_flow

# (name, input shape [B, T, H, W, C], layer keyword arguments).
_CONFIGS = (
    ('rgb clip, K=1, 20 iter', (1, 16, 112, 112, 3),
     dict(bottleneck=1, num_iter=20)),
    ('features, K=32, 10 iter', (1, 16, 56, 56, 64),
     dict(bottleneck=32, num_iter=10)),
)


def _time_compiled(fn, args, repeats):
  """Compiles `fn` for `args`; returns (compile s, median run s).

  Args:
    fn: A jitted function.
    args: Its arguments.
    repeats: Number of timed runs after one warm-up run.

  Returns:
    (compile_s, median_s); compile_s includes tracing and lowering.
  """
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(*args))  # Warm-up (allocations, caches).
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return compile_s, statistics.median(times)


def bench(shape, layer_kwargs, repeats):
  """Times one configuration.

  Args:
    shape: Input shape [B, T, H, W, C].
    layer_kwargs: Keyword arguments of `RepresentationFlow`.
    repeats: Timed runs per measurement.

  Returns:
    Dict with compile and median run times in seconds for 'fwd' and
    'fwd_bwd'.
  """
  model = rep_flow.RepresentationFlow(**layer_kwargs)
  x = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x)['params']

  def forward(params, x):
    return model.apply({'params': params}, x)

  def loss(params, x):
    return jnp.mean(jnp.square(forward(params, x)))

  fwd_bwd = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  return {
      'fwd': _time_compiled(jax.jit(forward), (params, x), repeats),
      'fwd_bwd': _time_compiled(fwd_bwd, (params, x), repeats),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=7)
  args = parser.parse_args()
  print(f'jax {jax.__version__}, devices {jax.devices()}')
  for name, shape, kwargs in _CONFIGS:
    result = bench(shape, kwargs, args.repeats)
    for kind, (compile_s, run_s) in result.items():
      print(f'{name:26s} {str(shape):22s} {kind:8s} '
            f'compile {compile_s:6.2f} s   median {1e3 * run_s:8.1f} ms')


if __name__ == '__main__':
  main()
