r"""The speed of the codebase on this machine, in one run: one table, one JSON.

  python -m airstreams_jax.tools.benchmark [--out=benchmark.json] [--quick] \
      [--official_flow=PATH/rep_flow_layer.py]

Measures, with the machine's description (CPU, cores, jax/XLA versions,
device kind, load average):
  * the f32 matmul GFLOP/s of this machine, in the same run: the roofline;
  * the train step of the synthetic config (its batch of 16) and of the
    paper-scale model (`configs/mit.py`: 8x112x112 clips, 339 classes, the
    selfie teacher's 2 classes; `--paper_batch`, 2 by default): clips/s,
    achieved GFLOP/s (`model_info`'s FLOPs of a clip's forward and backward
    pass x batch / median step time), compile time, peak memory;
  * RGB-only inference (the pruned network `predict` serves): clips/s and
    GFLOPs per clip;
  * the representation-flow layer, forward and forward+backward, at
    (1,16,112,112,3) K=1 20 iterations and (1,16,56,56,64) K=32 10 iterations;
  * the input pipeline (tf.data, the synthetic dataset at the train step's
    batch shape), and the selfie teacher's frames/s on 128-px frames;
  * the evolution: K = 1, 2, 5, 10 vmapped proxy trainings against K
    sequential ones (the group step the search runs).
When PyTorch is installed (`pip install -e '.[torch]'`)
the same train steps, inference and flow layer of `airstreams_jax/tools/torch_twin.py`
are timed in the same rounds, alternating with ours, so both see the same
load, and their FLOPs are printed beside ours. PyTorch runs in a child
process of its own (`airstreams_jax/tools/torch_worker.py`; loaded into this one it
slowed our step) and only one side works at a time. `--official_flow` also times
the official PyTorch representation-flow layer (piergiovanni/
representation-flow-cvpr19 `rep_flow_layer.py`, which is not in this
repository: fetch it, and write its `(mask1^1) & (mask2^1)` as
`(~mask1) & (~mask2)` for current PyTorch) against ours.

Every figure is the median of `--rounds` timed rounds after a warm-up; one
round gives each side an untimed call, to settle after the other side ran
(`alternate`), then times `--steps` calls. The goals of GitHub issue 12 are
checked at the end. Takes about 25 minutes on 2 CPU cores (`--quick`: about
8, fewer rounds, a smaller matmul and evolution K = 1, 2 only).
"""

if __name__ == '__main__':
  # Before anything loads TensorFlow: its native start-up lines stay off the
  # console.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.use_huge_pages()  # Re-runs the process first where it helps.
  _cli.quiet_tensorflow_import()

import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax import atomic_write
from airstreams_jax import model_info
from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import pipeline
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.models import rep_flow
from airstreams_jax.training import losses
from airstreams_jax.training import train
from configs import mit as mit_config
from configs import synthetic as synthetic_config
from airstreams_jax.tools import torch_worker
from airstreams_jax.tools.peak_memory import PeakMemory

_OUT = flags.DEFINE_string('out', 'benchmark.json', 'JSON file to write.')
_QUICK = flags.DEFINE_bool('quick', False, 'Fewer rounds, K = 1, 2 only.')
_ROUNDS = flags.DEFINE_integer('rounds', None, 'Timed rounds (default 5, '
                               '--quick 2).')
_PAPER_BATCH = flags.DEFINE_integer('paper_batch', 2,
                                    'Batch of the paper-scale train step.')
_TORCH = flags.DEFINE_bool('torch', True, 'Time the PyTorch twin when '
                           'PyTorch is installed.')
_ONLY = flags.DEFINE_list('only', [], 'Only these sections (default all): '
                          'matmul, synthetic, paper, flow, pipeline, '
                          'teacher, evolution.')
_OFFICIAL_FLOW = flags.DEFINE_string(
    'official_flow', '', 'Path of the official PyTorch rep_flow_layer.py '
    '(not in this repository) to time against ours.')

# Moments in Time: 339 action classes; the selfie teacher: background, person.
PAPER_CLASSES = (339, 2)
FLOW_SHAPES = (
    ('flow (1,16,112,112,3) K=1 20 it', (1, 16, 112, 112, 3),
     dict(bottleneck=1, num_iter=20)),
    ('flow (1,16,56,56,64) K=32 10 it', (1, 16, 56, 56, 64),
     dict(bottleneck=32, num_iter=10)),
)


# --------------------------------------------------------------------------
# Measuring.


def progress(message: str) -> None:
  print(f'{time.strftime("%H:%M:%S")} {message}', flush=True)


def alternate(fns: Mapping[str, Callable[[], Any]], rounds: int,
              calls: int = 1) -> Dict[str, float]:
  """Median seconds per call of each function, timed in alternating rounds.

  Each function is called once first (warm-up: allocations, caches, lazy
  compilation), then every round gives each function in turn one untimed
  call (when there are several) and times `calls` more, so a change of
  load on a shared machine affects all of them alike. The untimed call lets
  a side settle after the other ran: our paper-scale step took 2.6 s a step
  run after run, but 4.1-5.8 s right after a step of the PyTorch twin (whose
  memory the kernel had to hand back), while the twin's was the same either
  way; timing the first call of each turn measured that hand-over, not the
  step.
  """
  for fn in fns.values():
    fn()
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      if len(fns) > 1:  # Alone, nothing ran in between to settle from.
        fn()
      start = time.perf_counter()
      for _ in range(calls):
        fn()
      times[name].append((time.perf_counter() - start) / calls)
  return {name: statistics.median(t) for name, t in times.items()}


def machine() -> Dict[str, Any]:
  """What the figures were measured on."""
  cpu, cpu_flags = platform.processor(), set()
  with contextlib.suppress(OSError):
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          cpu = value.strip()
        elif key.strip() == 'flags':
          cpu_flags = set(value.split())
  device = jax.devices()[0]
  return {
      'cpu': cpu,
      'simd': [s for s in ('avx512f', 'avx2', 'fma') if s in cpu_flags],
      'cores': os.cpu_count(),
      'jax': jax.__version__,
      'jaxlib': jaxlib.__version__,
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'platform': device.platform,
      'device_kind': device.device_kind,
      'devices': jax.device_count(),
      'python': platform.python_version(),
      'load_average_at_start': os.getloadavg()[0],
  }


def matmul_gflops(n: int, rounds: int) -> float:
  """f32 [n, n] x [n, n] matmul GFLOP/s: what the machine can do."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  matmul = jax.jit(jnp.dot).lower(a, b).compile()
  seconds = alternate({'matmul': lambda: matmul(a, b).block_until_ready()},
                      rounds, calls=3)['matmul']
  return 2 * n**3 / seconds / 1e9


# --------------------------------------------------------------------------
# The model: train step, inference, FLOPs.


def random_batch(config, num_classes: int, num_seg_classes: int,
                 batch_size: int, seed: int = 0) -> Dict[str, np.ndarray]:
  """A batch of the train step's shapes (compute does not depend on the
  values: the flow layer runs a fixed number of iterations)."""
  d = config.dataset
  rng = np.random.default_rng(seed)
  shape = (batch_size, d.num_frames, d.image_size, d.image_size)
  return {
      'video': rng.integers(0, 256, shape + (3,), dtype=np.uint8),
      'label': rng.integers(0, num_classes, (batch_size,), dtype=np.int32),
      'masks': rng.integers(0, num_seg_classes, shape, dtype=np.uint8),
  }


def model_setup(config, num_classes: int, num_seg_classes: int
                ) -> train.Setup:
  """The train loop's setup for these class counts, without any dataset."""
  config.mesh = (('data', 1),)  # One device: the figures are per device.
  meta = dataset_from_config.DatasetMeta(
      num_classes, tuple(f'class{i}' for i in range(num_classes)),
      tuple(f'seg{i}' for i in range(num_seg_classes)))
  return train.model_setup(
      config, train.check_config(config, make_builder=False), meta)


@dataclasses.dataclass
class JaxTrainStep:
  """The codebase's jitted train step on a fixed batch, ready to call."""
  run: Callable[[], Any]
  compile_s: float
  peak_mb: Optional[float]


def jax_train_step(s: train.Setup, batch_np: Mapping[str, np.ndarray],
                   memory: PeakMemory) -> JaxTrainStep:
  memory.reset()
  state = train.create_state(s)
  batch = jax.device_put(dict(batch_np), s.batch_sharding)
  weights = jax.device_put(s.loss_weights, s.replicated)
  start = time.perf_counter()
  # The trainer's step: the run's own λ every call, the zero ones'
  # gradients skipped.
  step = train.jit_train_step(s, weights_fixed=True).lower(
      state, batch, weights).compile()
  compile_s = time.perf_counter() - start
  holder = {'state': state}

  def run():
    holder['state'], metrics = step(holder['state'], batch, weights)
    jax.block_until_ready(holder['state'])
    return metrics
  run()
  return JaxTrainStep(run, compile_s, memory.mb())


def jax_inference(s: train.Setup, video: np.ndarray) -> Callable[[], Any]:
  """RGB-only inference (eval mode, no stream heads), compiled."""
  state = train.create_state(s)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}

  def infer(variables, video):
    return s.model.apply(variables, video, train=False,
                         stream_heads=False)['logits']['merged']
  video = jax.device_put(video)
  compiled = jax.jit(infer).lower(variables, video).compile()
  return lambda: compiled(variables, video).block_until_ready()


def forward_macs_with_padding(s: train.Setup) -> float:
  """Multiply-adds (padding taps counted, as PyTorch's counter does) of a
  clip's train-mode forward pass, every stream and head."""
  d = s.config.dataset
  video = jax.ShapeDtypeStruct((1, d.num_frames, d.image_size, d.image_size,
                                3), jnp.uint8)
  variables = {'params': s.state_shapes.params,
               'batch_stats': s.state_shapes.batch_stats}

  def forward(variables, video):
    return s.model.apply(variables, video, train=True, mutable=['batch_stats'],
                         rngs={'dropout': jax.random.PRNGKey(0)})
  return model_info.function_cost(forward, variables,
                                  video).macs_with_padding


def torch_available() -> bool:
  return _TORCH.value and importlib.util.find_spec('torch') is not None


def bench_model(name: str, config, classes, batch_size: int, rounds: int,
                steps: int, memory: PeakMemory,
                worker: Optional[torch_worker.TorchWorker]) -> Dict[str, Any]:
  """Train step and inference of one config, ours and (with a worker: the
  PyTorch process) the twin's."""
  num_classes, num_seg_classes = classes
  config.batch_size = batch_size
  s = model_setup(config, num_classes, num_seg_classes)
  costs = model_info.model_costs(config, num_classes, num_seg_classes)
  batch = random_batch(config, num_classes, num_seg_classes, batch_size)
  ours = jax_train_step(s, batch, memory)
  result = {
      'batch': batch_size,
      'clip': list(costs['input_shape'][1:]),
      'params': costs['params'],
      'train_gflops_per_clip': costs['train_flops'] / 1e9,
      'inference_gflops_per_clip': costs['inference_flops'] / 1e9,
      'compile_s': ours.compile_s,
      'peak_rss_mb': ours.peak_mb,
  }
  train_fns = {'jax': ours.run}
  infer_fns = {'jax': jax_inference(s, batch['video'])}
  if worker:
    worker.release()  # The previous section's twin and its memory.
    result['torch'], _ = worker.build(
        'airstreams_jax.tools.torch_twin:model_callables', config, num_classes,
        num_seg_classes, batch, tuple(float(w) for w in s.loss_weights))
    train_fns['torch'] = worker.callable('train')
    infer_fns['torch'] = worker.callable('infer')
    result['forward_gmacs_per_clip'] = forward_macs_with_padding(s) / 1e9
    result['inference_gmacs_per_clip'] = (
        costs['inference_macs_with_padding'] / 1e9)
  progress(f'{name}: timing the train step')
  step_s = alternate(train_fns, rounds, steps)
  progress(f'{name}: timing inference')
  infer_s = alternate(infer_fns, rounds, steps)
  for side in train_fns:
    target = result if side == 'jax' else result['torch']
    target['train_step_s'] = step_s[side]
    target['train_clips_per_s'] = batch_size / step_s[side]
    target['train_gflops_per_s'] = (
        result['train_gflops_per_clip'] * batch_size / step_s[side])
    target['inference_clips_per_s'] = batch_size / infer_s[side]
  if worker:
    result['torch']['peak_rss_mb'] = worker.peak_rss_mb()
  return result


# --------------------------------------------------------------------------
# The flow layer.


def jax_flow_layer(shape, layer_kwargs):
  """Compiled forward and forward+backward (gradients w.r.t. the parameters
  and the input) of our flow layer on a random [B, T, H, W, C] input; each
  callable waits for its result."""
  model = rep_flow.RepresentationFlow(**layer_kwargs)
  x = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), x)['params']

  def forward(params, x):
    return model.apply({'params': params}, x)

  def loss(params, x):
    return jnp.mean(jnp.square(forward(params, x)))

  fwd = jax.jit(forward).lower(params, x).compile()
  fwd_bwd = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(
      params, x).compile()
  return (lambda: jax.block_until_ready(fwd(params, x)),
          lambda: jax.block_until_ready(fwd_bwd(params, x)))


def bench_flow(rounds: int, worker: Optional[torch_worker.TorchWorker],
               official_flow: str = '') -> Dict[str, Any]:
  """Forward and forward+backward of the flow layer: ours, the twin's and
  (with `official_flow`, the path of the official rep_flow_layer.py) the
  official PyTorch layer's, alternating."""
  results = {}
  for name, shape, kwargs in FLOW_SHAPES:
    fwd, fwd_bwd = jax_flow_layer(shape, kwargs)
    fns = {'jax fwd': fwd, 'jax fwd+bwd': fwd_bwd}
    if worker:
      worker.release()
      layer = (shape, kwargs['num_iter'], kwargs['bottleneck'])
      worker.build('airstreams_jax.tools.torch_twin:flow_callables', *layer)
      fns['torch fwd'] = worker.callable('flow fwd')
      fns['torch fwd+bwd'] = worker.callable('flow fwd+bwd')
      if official_flow:
        worker.build('airstreams_jax.tools.torch_twin:official_flow_callables',
                     os.path.abspath(official_flow), *layer)
        fns['official fwd+bwd'] = worker.callable('official fwd+bwd')
    progress(f'timing the {name}')
    results[name] = {k: 1e3 * v for k, v in alternate(fns, rounds).items()}
  return results


# --------------------------------------------------------------------------
# Data: the input pipeline and the teacher.


def bench_pipeline(config, batch_size: int, batches: int) -> float:
  """clips/s of the training input pipeline (synthetic dataset, built on
  first use) at the train step's batch shape."""
  builder = dataset_from_config.make_builder(config.dataset)
  dataset_from_config.prepare(builder)
  ds = pipeline.make_train_dataset(builder, config.dataset,
                                   local_batch_size=batch_size, seed=0)
  it = ds.as_numpy_iterator()
  for _ in range(3):  # Tracing and the first fill of the buffers.
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.perf_counter() - start)


def bench_teacher(rounds: int, num_frames: int = 64) -> Dict[str, Any]:
  """frames/s of the selfie teacher (the paper configs' teacher) on 128x170
  frames (the stored short side of the real-dataset configs)."""
  from airstreams_jax.teachers import selfie  # pylint: disable=g-import-not-at-top
  try:
    model_path = selfie.fetch_model()
  except Exception as e:  # pylint: disable=broad-except
    return {'error': f'{type(e).__name__}: {e}'}
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (num_frames, 128, 170, 3), dtype=np.uint8)
  teacher = selfie.SelfieTeacher(model_path=model_path)
  seconds = alternate({'teacher': lambda: teacher(frames)}, rounds)['teacher']
  return {'frames_per_s': num_frames / seconds,
          'frame': [128, 170]}


# --------------------------------------------------------------------------
# Evolution.


def group_vs_sequential(s: train.Setup, batch, k: int, rounds: int
                        ) -> Dict[str, float]:
  """One step of K vmapped proxy trainings (`proxy_trainer.jit_group_train_step`,
  what the evolution runs) against K steps of single proxies, alternating."""
  rng = np.random.default_rng(k)
  weights = jax.device_put(
      rng.uniform(0, 1, (k, len(losses.LOSS_NAMES))).astype(np.float32),
      s.replicated)
  states = proxy_trainer.jit_stack(s, k)(train.create_state(s))
  start = time.perf_counter()
  group_step = proxy_trainer.jit_group_train_step(s).lower(
      states, batch, weights).compile()
  group_compile = time.perf_counter() - start
  single = train.create_state(s)
  single_step = train.jit_train_step(s).lower(single, batch,
                                              weights[0]).compile()
  holder = {'states': states, 'single': single}

  def run_group():
    holder['states'], _ = group_step(holder['states'], batch, weights)
    jax.block_until_ready(holder['states'])

  def run_sequential():
    for i in range(k):
      holder['single'], _ = single_step(holder['single'], batch, weights[i])
    jax.block_until_ready(holder['single'])
  times = alternate({'group': run_group, 'sequential': run_sequential},
                    rounds)
  return {'group_step_s': times['group'],
          'sequential_s': times['sequential'],
          'speedup': times['sequential'] / times['group'],
          'group_compile_s': group_compile}


def bench_evolution(ks: List[int], rounds: int) -> Dict[str, Any]:
  """`group_vs_sequential` for each K, on the synthetic config's proxies
  (one device: a search is fastest with one device per process)."""
  config = synthetic_config.get_config()
  config.mesh = (('data', 1),)
  s = train.setup(proxy_trainer.proxy_config(config))
  batch = jax.device_put(
      random_batch(s.config, s.meta.num_classes, s.meta.num_seg_classes,
                   s.config.batch_size), s.batch_sharding)
  results = {}
  for k in ks:
    progress(f'evolution: K={k} vmapped against {k} sequential proxies')
    results[str(k)] = group_vs_sequential(s, batch, k, rounds)
  return results


# --------------------------------------------------------------------------
# Report.


def _fmt(value, unit='', digits=1):
  if value is None:
    return '—'
  return f'{value:,.{digits}f}{unit}'


def flat_keys(results: Mapping[str, Any]) -> Dict[str, Any]:
  """The headline figures under the names scripts read (those of the
  sections that ran)."""
  keys = {}
  if 'matmul' in results:
    keys['matmul_gflops_per_s'] = results['matmul']
  for prefix, name in (('', 'synthetic'), ('paper_', 'paper')):
    r = results.get(name)
    if not r:
      continue
    keys[f'{prefix}train_clips_per_s'] = r['train_clips_per_s']
    keys[f'{prefix}train_gflops_per_s'] = r['train_gflops_per_s']
    keys[f'{prefix}compile_s'] = r['compile_s']
    keys[f'{prefix}peak_rss_mb'] = r['peak_rss_mb']
    keys[f'{prefix}inference_clips_per_s'] = r['inference_clips_per_s']
    keys[f'{prefix}inference_gflops_per_clip'] = r[
        'inference_gflops_per_clip']
    if 'torch' in r:
      keys[f'torch_{prefix}train_clips_per_s'] = r['torch'][
          'train_clips_per_s']
      keys[f'torch_{prefix}inference_clips_per_s'] = r['torch'][
          'inference_clips_per_s']
  # The paper-scale model is what inference serves; the synthetic one's
  # figures keep their `synthetic_` name.
  for key in ('inference_clips_per_s', 'inference_gflops_per_clip',
              'torch_inference_clips_per_s'):
    if key in keys:
      keys['synthetic_' + key] = keys.pop(key)
    if 'paper_' + key in keys:
      keys[key] = keys.pop('paper_' + key)
  if 'torch_paper_inference_clips_per_s' in keys:
    keys['torch_inference_clips_per_s'] = keys.pop(
        'torch_paper_inference_clips_per_s')
  peaks = [keys.pop(k) for k in ('peak_rss_mb', 'paper_peak_rss_mb')
           if k in keys]
  if peaks and None not in peaks:
    keys['peak_rss_mb'] = max(peaks)
  if 'flow' in results:
    flow = results['flow'][FLOW_SHAPES[0][0]]
    keys['flow_fwd_ms'] = flow['jax fwd']
    keys['flow_fwd_bwd_ms'] = flow['jax fwd+bwd']
    if 'torch fwd+bwd' in flow:
      keys['torch_flow_fwd_bwd_ms'] = flow['torch fwd+bwd']
    if 'official fwd+bwd' in flow:
      keys['official_flow_fwd_bwd_ms'] = flow['official fwd+bwd']
  if 'pipeline' in results:
    keys['pipeline_clips_per_s'] = results['pipeline']
  if 'teacher' in results:
    keys['teacher_frames_per_s'] = results['teacher'].get('frames_per_s')
  for k, row in results.get('evolution', {}).items():
    keys[f'evolution_vmap_speedup_k{k}'] = row['speedup']
  return keys


def goals(keys: Mapping[str, Any]) -> List[str]:
  """Issue 12's goals: each met or not, and by how much."""
  lines = []

  def goal(text, needs, value, target):
    if not all(keys.get(k) for k in needs):
      lines.append(f'  [   ?   ] {text}: not measured')
      return
    met = 'met' if value() >= target else 'NOT met'
    lines.append(f'  [{met:^7}] {text}: {value():.2f} (goal >= {target:g})')

  goal('paper-scale train step, share of the matmul roofline',
       ('paper_train_gflops_per_s', 'matmul_gflops_per_s'),
       lambda: keys['paper_train_gflops_per_s'] / keys['matmul_gflops_per_s'],
       0.30)
  goal('synthetic train step, clips/s ours / PyTorch twin',
       ('train_clips_per_s', 'torch_train_clips_per_s'),
       lambda: keys['train_clips_per_s'] / keys['torch_train_clips_per_s'],
       1.0)
  goal('paper-scale train step, clips/s ours / PyTorch twin',
       ('paper_train_clips_per_s', 'torch_paper_train_clips_per_s'),
       lambda: (keys['paper_train_clips_per_s'] /
                keys['torch_paper_train_clips_per_s']), 1.0)
  goal('flow fwd+bwd (1,16,112,112,3) K=1 20 it, official layer / ours',
       ('official_flow_fwd_bwd_ms', 'flow_fwd_bwd_ms'),
       lambda: keys['official_flow_fwd_bwd_ms'] / keys['flow_fwd_bwd_ms'],
       12.0)
  goal('input pipeline / what the synthetic train step consumes',
       ('pipeline_clips_per_s', 'train_clips_per_s'),
       lambda: keys['pipeline_clips_per_s'] / keys['train_clips_per_s'], 3.0)
  goal('evolution, 10 vmapped / 10 sequential proxies',
       ('evolution_vmap_speedup_k10',),
       lambda: keys['evolution_vmap_speedup_k10'], 3.0)
  return lines


def table(results: Mapping[str, Any]) -> str:
  """The measurements side by side, one row each."""
  rows = [('what', 'ours (JAX)', 'PyTorch twin', 'ours / twin')]
  roofline = results.get('matmul')

  def row(what, ours, twin=None, unit='', digits=1, higher_is_better=True):
    ratio = None
    if ours and twin:
      ratio = ours / twin if higher_is_better else twin / ours
    rows.append((what, _fmt(ours, unit, digits),
                 _fmt(twin, unit, digits) if twin is not None else '',
                 _fmt(ratio, 'x', 2) if ratio else ''))

  if roofline:
    row('matmul f32 GFLOP/s (the roofline)', roofline)
  for name in ('synthetic', 'paper'):
    r = results.get(name)
    if not r:
      continue
    t = r.get('torch', {})
    rows.append((f'{name}: B={r["batch"]}, clips '
                 f'{"x".join(map(str, r["clip"]))}, '
                 f'{r["params"] / 1e6:.2f}M params', '', '', ''))
    row('  train clips/s', r['train_clips_per_s'], t.get('train_clips_per_s'),
        digits=2)
    row('  train GFLOP/s achieved', r['train_gflops_per_s'],
        t.get('train_gflops_per_s'))
    if roofline:
      row('  % of the roofline', 100 * r['train_gflops_per_s'] / roofline,
          100 * t['train_gflops_per_s'] / roofline if t else None)
    row('  inference clips/s (RGB only)', r['inference_clips_per_s'],
        t.get('inference_clips_per_s'), digits=2)
    row('  train GFLOPs per clip', r['train_gflops_per_clip'], digits=2)
    row('  inference GFLOPs per clip', r['inference_gflops_per_clip'],
        digits=2)
    if t:
      row('  forward GMACs per clip (padding counted)',
          r['forward_gmacs_per_clip'], t['forward_gmacs_per_clip'], digits=3)
      row('  inference GMACs per clip (padding counted)',
          r['inference_gmacs_per_clip'], t['inference_gmacs_per_clip'],
          digits=3)
      row('  parameters (M)', r['params'] / 1e6, t['params'] / 1e6, digits=3)
    row('  train step compile s', r['compile_s'])
    row('  peak RSS MB (ours: state, compile, step; twin: its process)',
        r['peak_rss_mb'], t.get('peak_rss_mb'), digits=0,
        higher_is_better=False)
  for name, f in results.get('flow', {}).items():
    row(f'{name} fwd ms', f['jax fwd'], f.get('torch fwd'), digits=0,
        higher_is_better=False)
    row(f'{name} fwd+bwd ms', f['jax fwd+bwd'], f.get('torch fwd+bwd'),
        digits=0, higher_is_better=False)
    if 'official fwd+bwd' in f:
      row(f'{name} fwd+bwd ms, official PyTorch layer', f['jax fwd+bwd'],
          f['official fwd+bwd'], digits=0, higher_is_better=False)
  if 'pipeline' in results:
    row('input pipeline clips/s (synthetic, B=16)', results['pipeline'])
  if 'teacher' in results:
    teacher = results['teacher']
    if 'frames_per_s' in teacher:
      row('selfie teacher frames/s (128x170)', teacher['frames_per_s'])
    else:
      rows.append(('selfie teacher', teacher['error'][:70], '', ''))
  for k, e in results.get('evolution', {}).items():
    row(f'evolution K={k}: vmapped / sequential throughput', e['speedup'],
        unit='x', digits=2)
  widths = [max(len(r[i]) for r in rows) for i in range(4)]
  return '\n'.join('  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
                   for r in rows)


SECTIONS = ('matmul', 'synthetic', 'paper', 'flow', 'pipeline', 'teacher',
            'evolution')
# The sections that time PyTorch beside us (in the worker process).
TWIN_SECTIONS = ('synthetic', 'paper', 'flow')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  unknown = sorted(set(_ONLY.value) - set(SECTIONS))
  if unknown:
    raise app.UsageError(f'--only: unknown sections {unknown}; use some of '
                         f'{SECTIONS}.')
  if _OFFICIAL_FLOW.value and not os.path.isfile(_OFFICIAL_FLOW.value):
    raise app.UsageError(f'--official_flow={_OFFICIAL_FLOW.value}: no such '
                         'file; give the path of the official '
                         'rep_flow_layer.py.')
  if _OFFICIAL_FLOW.value and not torch_available():
    raise app.UsageError("--official_flow needs PyTorch: pip install -e "
                         "'.[torch]' (and no --torch=false).")
  out_dir = os.path.dirname(os.path.abspath(_OUT.value))
  if not os.access(out_dir, os.W_OK):
    raise app.UsageError(f'--out={_OUT.value}: {out_dir} is not writable; '
                         'give another path.')
  # Progress is this script's own lines; library notices would bury them.
  logging.set_verbosity(logging.ERROR)
  tf.get_logger().setLevel('ERROR')
  tfds.disable_progress_bar()
  quick = _QUICK.value
  rounds = _ROUNDS.value or (2 if quick else 5)
  memory = PeakMemory()
  results: Dict[str, Any] = {'machine': machine(), 'rounds': rounds,
                             'quick': quick}
  m = results['machine']
  print(f'{m["cpu"]}, {m["cores"]} cores, {"/".join(m["simd"])}, jax '
        f'{m["jax"]}, load average {m["load_average_at_start"]:.1f}; '
        f'PyTorch twin: {"yes" if torch_available() else "no"}', flush=True)
  syn = synthetic_config.get_config()
  with contextlib.ExitStack() as stack:
    selected = set(_ONLY.value or SECTIONS)
    worker = (stack.enter_context(torch_worker.TorchWorker())
              if torch_available() and selected & set(TWIN_SECTIONS)
              else None)
    run_sections(results, syn, rounds, quick, memory, worker)
  keys = flat_keys(results)
  atomic_write.write_whole(_OUT.value, json.dumps(
      {**keys, 'details': results}, indent=1, sort_keys=True))
  print(table(results))
  print('Goals (GitHub issue 12):')
  print('\n'.join(goals(keys)))
  print(f'{results["seconds"] / 60:.1f} min; load average at the end '
        f'{results["load_average_at_end"]:.1f}; written to {_OUT.value}')


def run_sections(results: Dict[str, Any], syn, rounds: int, quick: bool,
                 memory: PeakMemory,
                 worker: Optional[torch_worker.TorchWorker]) -> None:
  """Runs the sections that --only selects, into `results`, writing the
  JSON after each."""
  sections = {
      'matmul': lambda: matmul_gflops(2048 if quick else 4096, rounds),
      'synthetic': lambda: bench_model(
          'synthetic', syn, model_info.default_class_counts(syn.dataset),
          syn.batch_size, rounds, 2 if quick else 3, memory, worker),
      'paper': lambda: bench_model(
          'paper', mit_config.get_config(), PAPER_CLASSES,
          _PAPER_BATCH.value, rounds, 1, memory, worker),
      'flow': lambda: bench_flow(rounds, worker, _OFFICIAL_FLOW.value),
      'pipeline': lambda: bench_pipeline(syn, syn.batch_size,
                                         20 if quick else 60),
      'teacher': lambda: bench_teacher(rounds),
      'evolution': lambda: bench_evolution(
          [1, 2] if quick else [1, 2, 5, 10], rounds),
  }
  start = time.perf_counter()
  for name in SECTIONS:
    if _ONLY.value and name not in _ONLY.value:
      continue
    progress(f'{name} ...')
    results[name] = sections[name]()
    # What is measured so far survives a later failure or Ctrl-C.
    atomic_write.write_whole(_OUT.value, json.dumps(
        {'details': results}, indent=1, sort_keys=True))
  results['seconds'] = time.perf_counter() - start
  results['load_average_at_end'] = os.getloadavg()[0]


if __name__ == '__main__':
  app.run(main)
