"""The benchmark's PyTorch twin computes what our model computes, and its
report says what the figures say. No timing here: speed is measured by
`python -m airstreams_jax.tools.benchmark`, never in tests.

The twin's tests run where PyTorch is installed
(`pip install -e '.[torch]'`) and are skipped
otherwise; the CI installs only the required packages.
"""

import os
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from airstreams_jax import errors
from airstreams_jax.models import airstreams
from airstreams_jax.models import rep_flow
from configs import synthetic as synthetic_config
from airstreams_jax.tools import benchmark
from airstreams_jax.tools import benchmark_measurements
from airstreams_jax.tools import twin_scope


def _flow_input(shape=(2, 4, 12, 14, 3), seed=0):
  # Smooth blobs plus noise: non-zero image gradients and real motion.
  rng = np.random.default_rng(seed)
  b, t, h, w, c = shape
  yy, xx = np.mgrid[:h, :w]
  frames = [np.exp(-((yy - 5) ** 2 + (xx - 4 - 1.5 * i) ** 2) / 8.0)
            for i in range(t)]
  x = np.stack(frames)[None, :, :, :, None] * np.ones((b, 1, 1, 1, c))
  return (x + 0.05 * rng.standard_normal(shape)).astype(np.float32)


def test_the_twin_flow_layer_computes_our_flow_and_its_gradients():
  torch = pytest.importorskip('torch')
  from airstreams_jax.tools import torch_twin_flow  # pylint: disable=g-import-not-at-top
  x = _flow_input()
  layer = rep_flow.RepresentationFlow(num_iter=6, bottleneck=1)
  params = layer.init(jax.random.PRNGKey(0), x)['params']

  def loss(params, x):
    return jnp.sum(layer.apply({'params': params}, x) ** 2)
  ours = np.asarray(layer.apply({'params': params}, x))
  grads = jax.grad(loss)(params, x)

  twin = torch_twin_flow.RepresentationFlow(3, num_iter=6, bottleneck=1)
  xt = torch.from_numpy(x).permute(0, 4, 1, 2, 3)
  theirs = twin(xt)
  (theirs ** 2).sum().backward()
  theirs = theirs.detach().permute(0, 2, 3, 4, 1).numpy()
  assert np.abs(ours).max() > 0.1  # The test needs real motion.
  np.testing.assert_allclose(theirs, ours, rtol=1e-3, atol=1e-3)
  for name in ('theta', 'tau', 'img_grad_x', 'div_y', 'flow_grad_x'):
    ref = np.asarray(grads[name])
    got = getattr(twin, name).grad.numpy().reshape(ref.shape)
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=1e-3 * np.abs(
        ref).max(), err_msg=name)


def test_the_twin_has_our_architecture_at_the_synthetic_config():
  pytest.importorskip('torch')
  from airstreams_jax.tools import torch_twin  # pylint: disable=g-import-not-at-top
  config = synthetic_config.get_config()
  num_classes, num_seg_classes = 6, 4
  model = airstreams.build_model(config.model, num_classes=num_classes,
                                 num_seg_classes=num_seg_classes)
  video = jnp.zeros((1, 8, 32, 32, 3), jnp.uint8)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), video, train=False))['params']
  ours = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))
  twin = torch_twin.AIRStreams(config.model, num_classes, num_seg_classes, 8)
  assert torch_twin.parameter_count(twin) == ours
  outputs = twin(torch_twin.to_torch_video(np.zeros((2, 8, 32, 32, 3),
                                                    np.uint8)))
  assert set(outputs['logits']) == {'rgb', 'flow', 'semantic', 'merged'}
  assert tuple(outputs['seg_logits'].shape) == (16, num_seg_classes, 32, 32)


@pytest.mark.parametrize('key,value', [
    ('flow.pyramid_levels', 3), ('flow.warps', 2),
    ('flow.presmooth_sigma', 1.0), ('flow_of_flow.enabled', True)])
def test_the_twin_refuses_a_model_it_does_not_mirror_in_one_line(key, value):
  """Without PyTorch: the check the twin and the benchmark's parent run."""
  config = synthetic_config.get_config()
  twin_scope.check_model_config(config.model)  # The paper's layers pass.
  branch, leaf = key.split('.')
  config.model[branch][leaf] = value
  with pytest.raises(errors.ConfigError) as raised:
    twin_scope.check_model_config(config.model)
  message = str(raised.value)
  assert f'model.{key}={value}' in message and '--config.model.' in message
  assert '\n' not in message


def test_the_twin_model_refuses_the_flow_pyramid():
  pytest.importorskip('torch')
  from airstreams_jax.tools import torch_twin  # pylint: disable=g-import-not-at-top
  config = synthetic_config.get_config()
  config.model.flow.pyramid_levels = 3
  with pytest.raises(errors.ConfigError, match='single-scale'):
    torch_twin.AIRStreams(config.model, 6, 4, 8)


def _results():
  """Known measurements, as the benchmark's sections return them."""
  model = dict(batch=2, clip=[8, 112, 112, 3], params=41e6,
               train_gflops_per_clip=100.0, inference_gflops_per_clip=25.0,
               compile_s=40.0, peak_rss_mb=6000.0, train_step_s=4.0,
               train_clips_per_s=0.5, train_gflops_per_s=50.0,
               inference_clips_per_s=2.0)
  twin = dict(train_step_s=2.0, train_clips_per_s=1.0,
              train_gflops_per_s=100.0, inference_clips_per_s=4.0,
              params=41e6, forward_gmacs_per_clip=19.0,
              inference_gmacs_per_clip=14.0, describe='torch')
  return {
      'matmul': 200.0,
      'synthetic': {**model, 'batch': 16, 'train_clips_per_s': 30.0,
                    'forward_gmacs_per_clip': 0.1,
                    'inference_gmacs_per_clip': 0.07,
                    'train_gflops_per_s': 15.0, 'peak_rss_mb': 2000.0,
                    'torch': {**twin, 'train_clips_per_s': 20.0}},
      'paper': {**model, 'forward_gmacs_per_clip': 19.1,
                'inference_gmacs_per_clip': 14.1, 'torch': twin},
      'flow': {benchmark_measurements.FLOW_SHAPES[0][0]: {
          'jax fwd': 20.0, 'jax fwd+bwd': 100.0, 'torch fwd': 80.0,
          'torch fwd+bwd': 900.0, 'official fwd+bwd': 1500.0}},
      'pipeline': 120.0,
      'teacher': {'frames_per_s': 230.0},
      'evolution': {'1': {'speedup': 1.0}, '10': {'speedup': 2.5}},
  }


def test_the_headline_keys_come_from_the_right_measurements():
  keys = benchmark.flat_keys(_results())
  assert keys['matmul_gflops_per_s'] == 200.0
  assert keys['train_clips_per_s'] == 30.0  # Synthetic.
  assert keys['paper_train_clips_per_s'] == 0.5
  assert keys['paper_train_gflops_per_s'] == 50.0
  assert keys['inference_clips_per_s'] == 2.0  # The paper-scale model.
  assert keys['inference_gflops_per_clip'] == 25.0
  assert keys['torch_train_clips_per_s'] == 20.0
  assert keys['torch_paper_train_clips_per_s'] == 1.0
  assert keys['torch_inference_clips_per_s'] == 4.0
  assert keys['flow_fwd_bwd_ms'] == 100.0
  assert keys['official_flow_fwd_bwd_ms'] == 1500.0
  assert keys['peak_rss_mb'] == 6000.0  # The larger of the two.
  assert keys['compile_s'] == 40.0
  assert keys['evolution_vmap_speedup_k10'] == 2.5
  assert keys['teacher_frames_per_s'] == 230.0


def test_the_goals_say_which_are_met_and_by_how_much():
  lines = benchmark.goals(benchmark.flat_keys(_results()))
  by_goal = {line.split(']')[1].split(':')[0].strip(): line for line in lines}
  assert by_goal['paper-scale train step, share of the matmul roofline'] == (
      '  [NOT met] paper-scale train step, share of the matmul roofline: '
      '0.25 (goal >= 0.3)')
  assert '[  met  ]' in by_goal[
      'synthetic train step, clips/s ours / PyTorch twin']  # 30 / 20.
  assert '0.50 (goal >= 1)' in by_goal[
      'paper-scale train step, clips/s ours / PyTorch twin']
  assert '15.00 (goal >= 12)' in by_goal[
      'flow fwd+bwd (1,16,112,112,3) K=1 20 it, official layer / ours']
  assert by_goal['input pipeline / what the synthetic train step '
                 'consumes'].endswith('[  met  ] input pipeline / what the '
                                      'synthetic train step consumes: 4.00 '
                                      '(goal >= 3)')


def test_missing_sections_are_reported_as_not_measured():
  results = {'matmul': 100.0}
  keys = benchmark.flat_keys(results)
  assert keys == {'matmul_gflops_per_s': 100.0}
  assert all('not measured' in line for line in benchmark.goals(keys))
  assert 'matmul' in benchmark.table(results)


def test_the_table_puts_the_twin_beside_ours():
  text = benchmark.table(_results())
  line = next(l for l in text.splitlines() if 'fwd+bwd ms, official' in l)
  assert line.split()[-3:] == ['100', '1,500', '15.00x']
  paper = text.split('paper:')[1]
  row = next(l for l in paper.splitlines() if 'train clips/s' in l)
  assert row.split()[-3:] == ['0.50', '1.00', '0.50x']


@pytest.mark.slow
def test_the_torch_worker_runs_callables_in_a_process_of_its_own(tmp_path):
  from airstreams_jax.tools import torch_worker  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'calls.txt'
  with torch_worker.TorchWorker() as worker:
    info, names = worker.build('worker_factories:appender', str(path))
    assert names == ['append'] and info['pid'] != os.getpid()
    # A fresh interpreter: none of the parent's JAX or TensorFlow in it.
    assert info['heavy_modules'] == []
    call = worker.callable('append')
    for calls in range(1, 4):
      call()  # Returns once the child has run it.
      assert len(path.read_text().split()) == calls
    worker.run('append', calls=2)
    assert path.read_text().split() == [str(info['pid'])] * 5
    # The peak is the latest build's: 300 MB touched while building, then
    # freed, shows until the next build; a release and a small build reset
    # it.
    worker.build('worker_factories:allocator', 300)
    assert worker.peak_rss_mb() > 300
    worker.release()
    worker.build('worker_factories:appender', str(path))
    assert worker.peak_rss_mb() < 250
    # A failure in the child comes back with its traceback; the worker
    # stays usable.
    with pytest.raises(torch_worker.TorchWorkerError, match='no such layer'):
      worker.build('worker_factories:failing', 'no such layer')
    with pytest.raises(torch_worker.TorchWorkerError, match="'missing'"):
      worker.run('missing')
    worker.run('append')
    assert len(path.read_text().split()) == 6
    worker.release()
    with pytest.raises(torch_worker.TorchWorkerError, match="'append'"):
      worker.run('append')
    process = worker._process  # pylint: disable=protected-access
  assert process.poll() == 0


@pytest.mark.slow
def test_a_busy_torch_worker_is_killed_when_closed():
  from airstreams_jax.tools import torch_worker  # pylint: disable=g-import-not-at-top
  worker = torch_worker.TorchWorker()
  worker.build('worker_factories:sleeper', 600)
  errors = []

  def run():  # The benchmark's call, interrupted (e.g. by Ctrl-C).
    try:
      worker.run('sleep')
    except torch_worker.TorchWorkerError as e:
      errors.append(e)
  thread = threading.Thread(target=run)
  thread.start()
  time.sleep(1)
  start = time.monotonic()
  worker.close(timeout_s=2)
  assert time.monotonic() - start < 30  # Not the 600 s of the call.
  thread.join(timeout=30)
  assert worker._process.poll() is not None  # pylint: disable=protected-access
  assert errors and 'died' in str(errors[0])


@pytest.mark.slow
def test_a_dying_torch_worker_is_reported():
  from airstreams_jax.tools import torch_worker  # pylint: disable=g-import-not-at-top
  with torch_worker.TorchWorker() as worker:
    worker.build('worker_factories:dying', 7)
    with pytest.raises(torch_worker.TorchWorkerError,
                       match=r'died \(exit code 7\) during .run'):
      worker.run('die')


def _twin_arguments():
  """`torch_twin.model_callables`'s arguments: the smoke config's model, a
  batch of 2 random clips, 6 classes, 4 segmentation classes."""
  config = synthetic_config.get_config('smoke')
  return (config, 6, 4, benchmark_measurements.random_batch(config, 6, 4, 2),
          (1.0, 0.0, 0.0, 1.0, 4.0))


def test_the_twin_infers_in_eval_mode_between_train_steps():
  torch = pytest.importorskip('torch')
  from airstreams_jax.tools import torch_twin  # pylint: disable=g-import-not-at-top
  fns, _ = torch_twin.model_callables(*_twin_arguments())
  fns['train']()
  first, second = fns['infer'](), fns['infer']()
  # Dropout off and BatchNorm's running statistics used (and kept): the
  # same clip gives the same logits.
  assert torch.equal(first, second)
  fns['train']()
  assert not torch.equal(fns['infer'](), first)  # The step changed weights.


@pytest.mark.slow
def test_the_twin_trains_in_the_worker():
  pytest.importorskip('torch')
  from airstreams_jax.tools import torch_worker  # pylint: disable=g-import-not-at-top
  with torch_worker.TorchWorker() as worker:
    info, names = worker.build('airstreams_jax.tools.torch_twin:model_callables',
                               *_twin_arguments())
    assert names == ['infer', 'train']
    assert info['params'] > 1e5 and info['forward_gmacs_per_clip'] > 0
    worker.run('train', calls=2)
    worker.run('infer')
