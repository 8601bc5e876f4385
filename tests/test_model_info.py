"""The model report: loop-corrected FLOPs, the breakdown, the CLI summary."""

import functools
import os
import subprocess
import sys
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from airstreams_jax import errors
from airstreams_jax import model_info
from airstreams_jax.models import airstreams
from airstreams_jax.models import flop_count
from airstreams_jax.models import rep_flow
from configs import base
from configs import mit as configs_mit
from configs import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = 'configs/synthetic.py:smoke'


def _run_cli(*args):
  return subprocess.Popen(
      [sys.executable, '-m', 'airstreams_jax.model_info', *args], cwd=ROOT,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def smoke_costs():
  config = synthetic.get_config('smoke')
  num_classes, num_seg_classes = model_info.default_class_counts(
      config.dataset)
  return config, model_info.model_costs(config, num_classes, num_seg_classes)


_ORIGINAL_SCAN = jax.lax.scan


def _unrolled_scan(*args, **kwargs):
  return _ORIGINAL_SCAN(*args, **kwargs, unroll=True)


def _flow_programs(num_iter):
  """Forward and forward+backward of a small flow layer, as fresh functions.

  Fresh functions each call, so that `jax.jit` traces them again (with
  whatever `lax.scan` is in place) instead of reusing a cached trace.
  """
  layer = rep_flow.RepresentationFlow(num_iter=num_iter)
  x = jax.ShapeDtypeStruct((1, 3, 16, 16, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: layer.init(jax.random.key(0), x), x)

  def forward(variables, x):
    return layer.apply(variables, x)

  def gradient(variables, x):
    return jax.grad(lambda v: jnp.sum(layer.apply(v, x) ** 2))(variables)

  return {'forward': forward, 'gradient': gradient}, (variables, x)


@pytest.mark.parametrize('program', ['forward', 'gradient'])
def test_scan_correction_matches_the_unrolled_flow_layer(program):
  num_iter = 4
  fns, args = _flow_programs(num_iter)
  corrected = flop_count.function_cost(fns[program], *args,
                                       count_macs=False).flops
  uncorrected = flop_count._lowered_flops(  # pylint: disable=protected-access
      jax.jit(fns[program]).lower(*args))
  # The reference: the same layer with every iteration written out, which
  # XLA counts in full.
  fns, args = _flow_programs(num_iter)
  with mock.patch('jax.lax.scan', _unrolled_scan):
    unrolled = flop_count._lowered_flops(  # pylint: disable=protected-access
        jax.jit(fns[program]).lower(*args))
  assert corrected == pytest.approx(unrolled, rel=1e-3)
  # XLA alone counts the loop body once (forward and backward loops alike).
  assert uncorrected < 0.6 * unrolled


def test_scan_correction_is_per_iteration():
  costs = {}
  for num_iter in (1, 2, 7):
    fns, args = _flow_programs(num_iter)
    costs[num_iter] = flop_count.function_cost(
        fns['forward'], *args, count_macs=False).flops
  per_iteration = costs[2] - costs[1]
  assert per_iteration > 0
  assert costs[7] == pytest.approx(costs[1] + 6 * per_iteration, rel=1e-3)


def test_macs_of_a_convolution_and_a_dot():
  conv = nn.Conv(16, (3, 3), padding='SAME', use_bias=False)
  x = jax.ShapeDtypeStruct((1, 8, 8, 4), jnp.float32)
  variables = jax.eval_shape(lambda x: conv.init(jax.random.key(0), x), x)
  cost = flop_count.function_cost(conv.apply, variables, x)
  assert cost.macs_with_padding == 8 * 8 * 9 * 4 * 16
  # XLA leaves out taps on the padding: per axis, 8 * 3 - 2 of them hit.
  assert cost.macs == 22 * 22 * 4 * 16
  a = jax.ShapeDtypeStruct((2, 5), jnp.float32)
  b = jax.ShapeDtypeStruct((5, 3), jnp.float32)
  cost = flop_count.function_cost(jnp.matmul, a, b)
  assert cost.macs == cost.macs_with_padding == 2 * 3 * 5


def test_default_class_counts():
  assert model_info.default_class_counts(
      synthetic.get_config().dataset) == (6, 4)
  assert model_info.default_class_counts(base.get_config().dataset) == (
      model_info.DEFAULT_NUM_CLASSES, 4)


def test_params_match_model_init(smoke_costs):
  config, costs = smoke_costs
  model = airstreams.build_model(config.model, num_classes=6,
                                 num_seg_classes=4)
  d = config.dataset
  video = jnp.zeros((1, d.num_frames, d.image_size, d.image_size, 3),
                    jnp.uint8)
  # Parameter shapes of `model.init`, without paying for its compilation.
  variables = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.key(0), video)
  counts = model_info.count_params(variables['params'])
  assert costs['params'] == counts['total'] == sum(
      leaf.size for leaf in jax.tree.leaves(variables['params']))
  for part in costs['parts'].values():
    assert part['params'] == sum(counts[m] for m in part['modules'])
  assert costs['parts']['other']['params'] == 0
  # Inference needs neither the single-stream tails nor their heads.
  tails = sum(counts[f'{s}_{kind}'] for s in airstreams.STREAMS
              for kind in ('tower_upper', 'head'))
  assert costs['inference_params'] == costs['params'] - tails


def test_inference_is_cheaper_than_training(smoke_costs):
  _, costs = smoke_costs
  assert 0 < costs['inference_macs'] <= costs['inference_macs_with_padding']
  assert 2 * costs['inference_macs'] < costs['inference_flops']
  assert costs['inference_flops'] < costs['train_flops']
  assert costs['inference_params'] < costs['params']


@pytest.mark.parametrize('key', ['train_flops', 'inference_flops',
                                 'inference_macs'])
def test_parts_add_up_to_the_total(smoke_costs, key):
  _, costs = smoke_costs
  parts = {name: part[key] for name, part in costs['parts'].items()
           if name != 'other'}
  assert set(parts) == {
      'flow_layer', 'segmentation_net', 'rgb_tower_lower', 'flow_tower_lower',
      'semantic_tower_lower', 'rgb_tower_upper+head', 'flow_tower_upper+head',
      'semantic_tower_upper+head', 'merged_tower+head'}
  counted = sum(v for v in parts.values() if v is not None)
  assert counted == pytest.approx(costs[key], rel=0.03)
  for name, value in parts.items():
    # The flow layer (channel mean, no bottleneck conv) has no conv or dot.
    if value is not None and (name, key) != ('flow_layer', 'inference_macs'):
      assert value > 0, name
  if key != 'train_flops':  # Inference runs no single-stream tail.
    assert [n for n, v in parts.items() if v is None] == [
        'rgb_tower_upper+head', 'flow_tower_upper+head',
        'semantic_tower_upper+head']


def test_training_counts_no_backward_for_heads_with_zero_weight(smoke_costs):
  """The smoke config has the paper's weights (λ_flow = λ_sem = 0): the
  trainer does not differentiate those losses, and the count follows it."""
  config, paper = smoke_costs
  assert config.loss_weights.flow == config.loss_weights.semantic == 0.0
  config = config.copy_and_resolve_references()
  config.loss_weights.update(base.UNIFORM_LOSS_WEIGHTS)
  uniform = model_info.model_costs(
      config, *model_info.default_class_counts(config.dataset))
  assert paper['train_flops'] < uniform['train_flops']
  assert paper['inference_flops'] == uniform['inference_flops']
  for part in ('flow_tower_upper+head', 'semantic_tower_upper+head'):
    assert (paper['parts'][part]['train_flops'] <
            0.6 * uniform['parts'][part]['train_flops']), part
  for part in ('rgb_tower_upper+head', 'merged_tower+head'):
    assert (paper['parts'][part]['train_flops'] ==
            uniform['parts'][part]['train_flops']), part


@pytest.mark.slow
def test_cli_ends_with_the_four_summary_lines(smoke_costs):
  cli = _run_cli(f'--config={SMOKE}')
  _, costs = smoke_costs
  stdout, stderr = cli.communicate(timeout=600)
  assert cli.returncode == 0, stderr[-3000:]
  lines = stdout.strip().splitlines()[-4:]
  keys = [line.split(':')[0] for line in lines]
  assert tuple(keys) == model_info.SUMMARY_KEYS
  values = {key: float(line.split(':', 1)[1]) for key, line in
            zip(keys, lines)}
  expected = model_info.summary(costs)
  assert int(lines[0].split(':')[1]) == expected['params']
  for key in model_info.SUMMARY_KEYS[1:]:
    assert values[key] == pytest.approx(expected[key], rel=1e-5)


@pytest.mark.slow
def test_cli_rejects_an_unknown_config_key_in_one_line():
  proc = _run_cli(f'--config={SMOKE}', '--config.model.nope=1')
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode != 0
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('error:') and 'nope' in last, stderr[-2000:]


def test_a_config_the_model_rejects_is_a_config_error():
  config = synthetic.get_config('smoke')
  config.model.merge_after = 6
  with pytest.raises(errors.ConfigError, match='merge_after'):
    model_info.model_costs(config, 6, 4)


def test_paper_scale_inference_fits_the_papers_17g_macs():
  """The full-size model of the real-dataset configs (they share it:
  tests/test_configs.py), RGB-only inference, counted in multiply-adds."""
  config = configs_mit.get_config()
  # 339 MiT classes, the selfie teacher's 2 classes.
  costs = model_info.model_costs(config, 339, 2)
  summary = model_info.summary(costs)
  print(model_info.format_report(costs))
  assert summary['inference_gmacs'] <= 17.0
  # Still a full-size model: ~41M parameters in training, three streams.
  assert summary['params'] > 30e6
  assert config.model.streams == ('rgb', 'flow', 'semantic')
