"""AIRStreams structure: shapes, pruned inference, stop-gradient, DRN size."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from airstreams_jax.models import airstreams
from airstreams_jax.models import drn
from airstreams_jax.models import flow_of_flow
from airstreams_jax.models import tvn
from airstreams_jax.training import losses
from configs import synthetic

NUM_CLASSES, NUM_SEG = 5, 4
VIDEO_SHAPE = (2, 4, 32, 32, 3)


def _model(**overrides):
  config = synthetic.get_config('smoke').model
  with config.unlocked():
    for k, v in overrides.items():
      config[k] = v
  return airstreams.build_model(config, num_classes=NUM_CLASSES,
                                num_seg_classes=NUM_SEG)


def _video(seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(
      0, 256, VIDEO_SHAPE, dtype=np.uint8))


@functools.lru_cache(maxsize=None)
def _variables():
  """The smoke model and its initial variables (the gradient options,
  `stop_gradient` and `grad_scale`, do not change the parameters)."""
  model = _model()
  return model, jax.jit(functools.partial(model.init, train=False))(
      {'params': jax.random.PRNGKey(0)}, _video())


@pytest.mark.parametrize('streams', [('rgb',), ('flow',), ('semantic',),
                                     ('rgb', 'flow'), ('rgb', 'semantic'),
                                     ('rgb', 'flow', 'semantic')])
@pytest.mark.parametrize('merge_after', [1, 3, 5])
def test_output_shapes(streams, merge_after):
  model = _model(streams=streams, merge_after=merge_after)
  out, variables = jax.eval_shape(
      lambda v: model.init_with_output({'params': jax.random.PRNGKey(0)}, v,
                                       train=False), _video())
  assert set(out['logits']) == set(streams) | {'merged'}
  for logits in out['logits'].values():
    assert logits.shape == (VIDEO_SHAPE[0], NUM_CLASSES)
  assert ('flow' in out) == ('flow' in streams)
  assert ('seg_logits' in out) == ('semantic' in streams)
  if 'flow' in streams:
    assert out['flow'].shape == VIDEO_SHAPE[:4] + (2,)
    assert 'flow_layer' in variables['params']
  if 'semantic' in streams:
    assert out['seg_logits'].shape == VIDEO_SHAPE[:4] + (NUM_SEG,)
  expected = {f'{s}_tower_lower' for s in streams} | {'merged_tower'}
  assert expected <= set(variables['params'])


def test_invalid_streams_and_merge_point():
  with pytest.raises(ValueError, match='non-empty subset'):
    jax.eval_shape(lambda v: _model(streams=('rgb', 'depth')).init(
        jax.random.PRNGKey(0), v, train=False), _video())
  with pytest.raises(ValueError, match='merge_after'):
    jax.eval_shape(lambda v: _model(merge_after=6).init(
        jax.random.PRNGKey(0), v, train=False), _video())


def test_rgb_only_inference_equals_training_merged_and_is_cheaper():
  model, variables = _variables()
  video = _video(1)
  full, pruned = (
      jax.jit(functools.partial(model.apply, train=False, stream_heads=heads))
      .lower(variables, video).compile() for heads in (True, False))
  out_full, out_pruned = full(variables, video), pruned(variables, video)
  assert set(out_pruned['logits']) == {'merged'}
  np.testing.assert_allclose(out_pruned['logits']['merged'],
                             out_full['logits']['merged'], rtol=1e-6,
                             atol=1e-6)
  # XLA's count: the single-stream tails and heads are not computed.
  assert (pruned.cost_analysis()['flops'] <
          0.9 * full.cost_analysis()['flops'])


@functools.lru_cache(maxsize=None)
def _loss_and_grads(overrides=(), untrained=()):
  """The jitted (loss, terms), parameter gradients of `_model(**overrides)`
  (same parameters as `_variables()`'s) on a fixed batch, for weights given
  at the call."""
  model = _model(**dict(overrides))
  _, variables = _variables()
  batch = {'label': jnp.asarray([1, 3]),
           'masks': jnp.ones(VIDEO_SHAPE[:4], jnp.uint8)}

  def loss_fn(p, weights):
    out, _ = model.apply({'params': p,
                          'batch_stats': variables['batch_stats']},
                         _video(2), train=True, mutable=['batch_stats'],
                         rngs={'dropout': jax.random.PRNGKey(1)})
    return losses.total_loss(out, batch, weights, multi_label=False,
                             untrained=untrained)
  return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def _action_loss_grads(**overrides):
  """Parameter gradients of the action losses alone (λ_interm = 0: the
  segmentation loss would reach the DRN anyway)."""
  _, variables = _variables()
  return _loss_and_grads(tuple(sorted(overrides.items())))(
      variables['params'], jnp.asarray([1.0, 1.0, 1.0, 1.0, 0.0]))[1]


@pytest.mark.parametrize('stop_gradient,stop_at', [
    (False, ('flow', 'semantic')), (True, ('flow', 'semantic')),
    (True, ('flow',))])
def test_action_gradients_reach_flow_and_segmentation_unless_stopped(
    stop_gradient, stop_at):
  g = _action_loss_grads(**(
      dict(stop_gradient=True, stop_gradient_at=stop_at) if stop_gradient
      else {}))
  for part, name in (('flow_layer', 'flow'), ('segmentation_net', 'semantic')):
    norm = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g[part]))
    if stop_gradient and name in stop_at:
      assert norm == 0.0, part
    else:
      assert norm > 0.0, part
  # The towers learn in both modes.
  assert sum(float(jnp.abs(x).sum())
             for x in jax.tree.leaves(g['rgb_tower_lower'])) > 0


def test_untrained_losses_skip_their_backward_with_the_same_gradients():
  """λ_flow = λ_sem = 0 (the paper's weights): leaving those losses out of
  differentiation gives the gradients of multiplying them by 0, with less
  work (the flow and semantic tails' backward passes are gone)."""
  _, variables = _variables()
  params = variables['params']
  weights = jnp.asarray([1.0, 0.0, 0.0, 1.0, 1.0])
  assert losses.untrained_losses(weights) == ('flow', 'semantic')
  # The zeroing function is the one the test above compiled.
  zeroed = _loss_and_grads()
  skipped = _loss_and_grads(untrained=('flow', 'semantic'))
  assert (skipped.lower(params, weights).cost_analysis()['flops'] <
          0.97 * zeroed.lower(params, weights).cost_analysis()['flops'])
  (loss_z, terms_z), grad_z = zeroed(params, weights)
  (loss_s, terms_s), grad_s = skipped(params, weights)
  assert float(loss_s) == float(loss_z)
  for name in losses.LOSS_NAMES:  # Every term is still computed.
    assert float(terms_s[name]) == float(terms_z[name]), name
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grad_z),
                          jax.tree.leaves(grad_s)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9,
                               err_msg=jax.tree_util.keystr(path))
  for tail in ('flow_tower_upper', 'flow_head', 'semantic_tower_upper',
               'semantic_head'):
    assert not any(np.any(x) for x in jax.tree.leaves(grad_s[tail])), tail


def test_scale_gradient_is_identity_forward_and_scales_backward():
  x = jnp.linspace(-2.0, 3.0, 7)
  f = lambda v, s: jnp.sum(jnp.sin(airstreams.scale_gradient(v, s)) * v)
  np.testing.assert_array_equal(airstreams.scale_gradient(x, 0.3), x)
  # d/dv sum(sin(g(v)) v) = cos(v) v s + sin(v): only the path through the
  # scaled value is scaled (analytic answer).
  for scale in (0.0, 0.3, 1.0):
    np.testing.assert_allclose(
        jax.grad(f)(x, scale), np.cos(x) * x * scale + np.sin(x), rtol=1e-6)


def test_grad_scale_scales_what_the_action_losses_send_to_the_representations():
  """grad_scale=s: the flow layer's and segmentation net's gradients from the
  action losses are s times those of propagation; s=0 stops them."""

  def grads(**overrides):
    return _action_loss_grads(**overrides)

  # (stop_gradient=True gives zeros here: the test above.)
  full, quarter, zero = (grads(), grads(grad_scale=0.25),
                         grads(grad_scale=0.0))
  for part in ('flow_layer', 'segmentation_net'):
    for a, b in zip(jax.tree.leaves(quarter[part]),
                    jax.tree.leaves(full[part])):
      np.testing.assert_allclose(a, 0.25 * b, rtol=2e-4, atol=1e-9)
    assert sum(float(jnp.abs(x).sum())
               for x in jax.tree.leaves(full[part])) > 0
    for a in jax.tree.leaves(zero[part]):
      np.testing.assert_array_equal(a, 0.0)
  # The towers are not scaled.
  for a, b in zip(jax.tree.leaves(quarter['rgb_tower_lower']),
                  jax.tree.leaves(full['rgb_tower_lower'])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_flow_of_flow_stream_shapes_and_gradients():
  model = _model(streams=('rgb', 'flow'), flow_of_flow=dict(
      enabled=True, features=6, num_iter=3, bottleneck=2))
  out, variables = jax.eval_shape(
      lambda v: model.init_with_output({'params': jax.random.PRNGKey(0)}, v,
                                       train=False), _video())
  assert {'flow', 'conv', 'flow_of_flow'} <= set(
      variables['params']['flow_layer'])
  # bottleneck 2 in the second layer: u1 and u2 for each of 2 channels.
  assert out['flow'].shape == VIDEO_SHAPE[:4] + (4,)

  # The layer itself (a small compile): the last genuine frame is repeated
  # and every part learns.
  layer = flow_of_flow.FlowOfFlow(first=dict(num_iter=3), features=6,
                              second=dict(num_iter=3, bottleneck=2))
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 4, 16, 16, 3)),
                  jnp.float32)
  variables = layer.init(jax.random.PRNGKey(0), x)
  flow = layer.apply(variables, x)
  assert flow.shape == (2, 4, 16, 16, 4)
  np.testing.assert_array_equal(flow[:, -1], flow[:, -2])

  def loss_fn(params):
    flow, _ = layer.apply({'params': params,
                           'batch_stats': variables['batch_stats']}, x,
                          train=True, mutable=['batch_stats'])
    return jnp.sum(flow ** 2)
  g = jax.jit(jax.grad(loss_fn))(variables['params'])
  for part in ('flow', 'conv', 'flow_of_flow'):
    assert sum(float(jnp.abs(v).sum()) for v in jax.tree.leaves(g[part])) > 0


def test_flow_of_flow_needs_three_frames():
  model = _model(streams=('flow',), flow_of_flow=dict(
      enabled=True, features=4, num_iter=2, bottleneck=1))
  with pytest.raises(ValueError, match='T >= 3'):
    jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v,
                                        train=False),
                   jnp.zeros((1, 2, 32, 32, 3), jnp.uint8))


def test_drn18_backbone_parameter_count_at_full_width():
  net = drn.DilatedResNet18(num_classes=91)
  shapes = jax.eval_shape(
      lambda x: net.init(jax.random.PRNGKey(0), x, train=False),
      jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))['params']
  backbone = sum(int(np.prod(x.shape)) for k, v in shapes.items()
                 if k != 'classifier' for x in jax.tree.leaves(v))
  assert abs(backbone - 11.18e6) / 11.18e6 < 0.02, backbone


@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_drn_output_stride(output_stride):
  net = drn.DilatedResNet18(num_classes=4, widths=(8, 8, 8, 8),
                            output_stride=output_stride)
  out = jax.eval_shape(
      lambda x: net.init_with_output(jax.random.PRNGKey(0), x,
                                     train=False)[0],
      jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32))
  assert out.shape == (2, 224 // output_stride, 224 // output_stride, 4)


def test_block_spec_rejects_unknown_keys():
  with pytest.raises(ValueError, match='Unknown tower block keys'):
    tvn.BlockSpec.from_config({'filters': 8, 'kernal': 3})


@pytest.mark.parametrize('spatial', tvn.SPATIAL_OPS)
@pytest.mark.parametrize('temporal', tvn.TEMPORAL_OPS)
@pytest.mark.parametrize('stride,temporal_stride', [(1, 1), (2, 2)])
def test_tvn_block_options(spatial, temporal, stride, temporal_stride):
  spec = tvn.BlockSpec(filters=8, spatial=spatial, kernel=3, stride=stride,
                       temporal=temporal, temporal_kernel=3,
                       temporal_stride=temporal_stride, expand=3,
                       se_ratio=0.5, context_gating=True, skip=True,
                       repeats=3)
  stage = tvn.TowerStage((spec,))
  x = jax.ShapeDtypeStruct((2, 4, 16, 16, 5), jnp.float32)
  out, variables = jax.eval_shape(
      lambda x: stage.init_with_output(jax.random.PRNGKey(0), x, train=False),
      x)
  frames = 4 if temporal == 'none' else 4 // temporal_stride
  assert out.shape == (2, frames, 16 // stride, 16 // stride, 24)
  params = variables['params']
  # Repeats after the first alternate the temporal op: off, on.
  has_temporal_conv = ['temporal_conv' in params[f'block0_repeat{r}']
                       for r in range(3)]
  assert has_temporal_conv == [temporal == '1d', False, temporal == '1d']
  first = params['block0_repeat0']
  assert ('spatial_conv' in first) == (spatial in ('std', 'depth'))
  assert 'se_reduce' in first and 'gate' in first
  # The skip is dropped when a temporal stride changes the frame count.
  assert ('skip_proj' in first) == (frames == 4)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model, variables = _variables()
  video = _video(3)
  bf16 = _model(dtype='bfloat16')
  out = jax.jit(functools.partial(bf16.apply, train=False))(variables, video)
  ref = jax.jit(functools.partial(model.apply, train=False))(variables, video)
  assert out['flow'].dtype == jnp.bfloat16
  for head, logits in out['logits'].items():
    assert logits.dtype == jnp.float32, head
    scale = float(jnp.abs(ref['logits'][head]).max())
    # bfloat16 keeps 8 bits of mantissa: agreement to a few percent.
    assert float(jnp.abs(logits - ref['logits'][head]).max()) < 0.05 * scale


def test_drn_upsampling_head_gives_full_resolution_logits_that_learn():
  """The decoder's logits are at the input resolution whatever the output
  stride, and every decoder layer gets gradient from a pixelwise loss."""
  net = drn.DilatedResNet18(num_classes=4, widths=(8, 8, 8, 8),
                            output_stride=16, decoder_features=8)
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  variables = net.init(jax.random.PRNGKey(0), images, train=False)
  logits = net.apply(variables, images, train=False)
  assert logits.shape == (2, 32, 32, 4)

  def loss(params):
    out, _ = net.apply({**variables, 'params': params}, images, train=True,
                       mutable=['batch_stats'])
    return jnp.mean(out[..., 1] * jnp.arange(32.0)[:, None])
  grads = jax.grad(loss)(variables['params'])
  for name in ('decoder_in', 'decoder_skip0', 'decoder_fuse0',
               'decoder_skip1', 'decoder_fuse1', 'decoder_skip2',
               'decoder_fuse2', 'stem'):
    assert float(jnp.abs(grads[name]['kernel']).sum()) > 0, name
