"""What `airstreams_jax.tools.benchmark` measures: each section's timings.

Every figure is the median of timed rounds after a warm-up (`alternate`),
ours and, with a `torch_worker.TorchWorker`, the PyTorch twin's in the same
rounds. The command, its flags and its report are in `benchmark.py`.
"""

import contextlib
import dataclasses
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from airstreams_jax import model_info
from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import pipeline
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.models import flop_count
from airstreams_jax.models import rep_flow
from airstreams_jax.training import losses
from airstreams_jax.training import config_checks
from airstreams_jax.training import setup as setup_lib
from configs import synthetic as synthetic_config
from airstreams_jax.tools import torch_worker
from airstreams_jax.tools import twin_scope
from airstreams_jax.tools.peak_memory import PeakMemory

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
                ) -> setup_lib.Setup:
  """The train loop's setup for these class counts, without any dataset."""
  config.mesh = (('data', 1),)  # One device: the figures are per device.
  meta = dataset_from_config.DatasetMeta(
      num_classes, tuple(f'class{i}' for i in range(num_classes)),
      tuple(f'seg{i}' for i in range(num_seg_classes)))
  return setup_lib.model_setup(
      config, config_checks.check_config(config, make_builder=False), meta)


@dataclasses.dataclass
class JaxTrainStep:
  """The codebase's jitted train step on a fixed batch, ready to call."""
  run: Callable[[], Any]
  compile_s: float
  peak_mb: Optional[float]


def jax_train_step(s: setup_lib.Setup, batch_np: Mapping[str, np.ndarray],
                   memory: PeakMemory) -> JaxTrainStep:
  memory.reset()
  state = setup_lib.create_state(s)
  batch = jax.device_put(dict(batch_np), s.batch_sharding)
  weights = jax.device_put(s.loss_weights, s.replicated)
  start = time.perf_counter()
  # The trainer's step: the run's own λ every call, the zero ones'
  # gradients skipped.
  step = setup_lib.jit_train_step(s, weights_fixed=True).lower(
      state, batch, weights).compile()
  compile_s = time.perf_counter() - start
  holder = {'state': state}

  def run():
    holder['state'], metrics = step(holder['state'], batch, weights)
    jax.block_until_ready(holder['state'])
    return metrics
  run()
  return JaxTrainStep(run, compile_s, memory.mb())


def jax_inference(s: setup_lib.Setup, video: np.ndarray) -> Callable[[], Any]:
  """RGB-only inference (eval mode, no stream heads), compiled."""
  state = setup_lib.create_state(s)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}

  def infer(variables, video):
    return s.model.apply(variables, video, train=False,
                         stream_heads=False)['logits']['merged']
  video = jax.device_put(video)
  compiled = jax.jit(infer).lower(variables, video).compile()
  return lambda: compiled(variables, video).block_until_ready()


def forward_macs_with_padding(s: setup_lib.Setup) -> float:
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
  return flop_count.function_cost(forward, variables,
                                  video).macs_with_padding

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
    # Here, not in the child: a model the twin does not mirror is refused in
    # one line, not as the worker's traceback.
    twin_scope.check_model_config(config.model)
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
      worker.build('airstreams_jax.tools.torch_twin_flow:flow_callables',
                   *layer)
      fns['torch fwd'] = worker.callable('flow fwd')
      fns['torch fwd+bwd'] = worker.callable('flow fwd+bwd')
      if official_flow:
        worker.build(
            'airstreams_jax.tools.torch_twin_flow:official_flow_callables',
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


def group_vs_sequential(s: setup_lib.Setup, batch, k: int, rounds: int
                        ) -> Dict[str, float]:
  """One step of K vmapped proxy trainings (`proxy_trainer.jit_group_train_step`,
  what the evolution runs) against K steps of single proxies, alternating."""
  rng = np.random.default_rng(k)
  weights = jax.device_put(
      rng.uniform(0, 1, (k, len(losses.LOSS_NAMES))).astype(np.float32),
      s.replicated)
  states = proxy_trainer.jit_stack(s, k)(setup_lib.create_state(s))
  start = time.perf_counter()
  group_step = proxy_trainer.jit_group_train_step(s).lower(
      states, batch, weights).compile()
  group_compile = time.perf_counter() - start
  single = setup_lib.create_state(s)
  single_step = setup_lib.jit_train_step(s).lower(single, batch,
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
  s = setup_lib.setup(proxy_trainer.proxy_config(config))
  batch = jax.device_put(
      random_batch(s.config, s.meta.num_classes, s.meta.num_seg_classes,
                   s.config.batch_size), s.batch_sharding)
  results = {}
  for k in ks:
    progress(f'evolution: K={k} vmapped against {k} sequential proxies')
    results[str(k)] = group_vs_sequential(s, batch, k, rounds)
  return results
