"""1x1 convolutions as matrix products: the plain convolution's values and
gradients (float64, so only rounding can differ), everything else left to
XLA, and the model's choice of the form (same parameters either way)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from airstreams_jax.models import airstreams
from airstreams_jax.models import drn
from airstreams_jax.models import pointwise_conv
from airstreams_jax.models import tvn
from configs import base
from configs import synthetic
from tests import conv_checks

_NHWC = ('NHWC', 'HWIO', 'NHWC')
_NDHWC = ('NDHWC', 'DHWIO', 'NDHWC')


@pytest.fixture
def float64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize('shape,kernel,strides,padding,numbers', [
    ((2, 5, 6, 3), (1, 1, 3, 7), (1, 1), 'SAME', _NHWC),
    ((2, 7, 9, 4), (1, 1, 4, 5), (2, 2), 'SAME', _NHWC),  # Odd sizes.
    ((1, 8, 7, 2), (1, 1, 2, 3), (3, 2), 'VALID', _NHWC),
    ((1, 4, 6, 6, 3), (1, 1, 1, 3, 8), (1, 1, 1), 'SAME', _NDHWC),
    ((2, 3, 7, 5, 4), (1, 1, 1, 4, 6), (1, 2, 2), 'SAME', _NDHWC),
    ((1, 6, 6, 2), (1, 1, 2, 3), (1, 1), ((0, 0), (0, 0)), _NHWC),
    ((2, 5, 6, 7), (1, 1, 7, 3), (1, 1), 'SAME', _NHWC),  # A plain product.
    ((1, 3, 5, 6, 9), (1, 1, 1, 9, 4), (1, 2, 1), 'SAME', _NDHWC),
])
def test_values_and_gradients_are_the_plain_convolutions(
    float64, shape, kernel, strides, padding, numbers):
  del float64
  program = conv_checks.assert_matches_the_plain_convolution(
      pointwise_conv.conv, shape, kernel, strides, padding, numbers)
  # A matrix product, not a convolution, in our program; with few input
  # channels one whose kernel gradient is a reduction per input channel.
  assert 'dot_general' in program and 'conv_general_dilated' not in program
  x, w = jnp.zeros(shape), jnp.zeros(kernel)

  def backward_pass(x, w, dy):
    return jax.vjp(lambda x, w: pointwise_conv.conv(
        x, w, strides, padding, dimension_numbers=numbers), x, w)[1](dy)
  backward = str(jax.make_jaxpr(backward_pass)(
      x, w, pointwise_conv.conv(x, w, strides, padding,
                                dimension_numbers=numbers)))
  few = kernel[-2] <= pointwise_conv.FEW_INPUT_CHANNELS
  assert ('reduce_sum' in backward) == few
  # Otherwise one product of the arrays flattened to [P, C], contracting
  # their leading axis (the form XLA:CPU runs without a transposing copy).
  c_in, c_out = kernel[-2], kernel[-1]
  products = re.findall(
      rf'f\d+\[{c_in},{c_out}\] = dot_general\[\s*dimension_numbers=\(\(\[0\], '
      rf'\[0\]\), \(\[\], \[\]\)\)[^\]]*\] (\w+) (\w+)', backward)
  assert len(products) == (0 if few else 1), backward
  for operand in (products[0] if products else ()):
    assert re.search(rf'\b{operand}:f\d+\[\d+,\d+\] = reshape', backward)


@pytest.mark.parametrize('kernel,kwargs', [
    ((3, 3, 4, 4), {}),  # Not 1x1.
    ((1, 1, 2, 4), dict(feature_group_count=2)),
    ((1, 1, 4, 4), dict(lhs_dilation=(2, 2), padding=((0, 0), (0, 0)))),
    ((1, 1, 4, 4), dict(padding=((1, 0), (0, 1)))),  # Padding that reads 0s.
    ((1, 1, 4, 4), dict(dimension_numbers=('NCHW', 'OIHW', 'NCHW'))),
])
def test_other_convolutions_are_left_to_xla(float64, kernel, kwargs):
  del float64
  rng = np.random.default_rng(1)
  kwargs = dict(dict(padding='SAME', dimension_numbers=_NHWC), **kwargs)
  if kwargs['dimension_numbers'] == _NHWC:
    x = jnp.asarray(rng.standard_normal((1, 5, 5, 4)))
    w = jnp.asarray(rng.standard_normal(kernel))
  else:
    x = jnp.asarray(rng.standard_normal((1, 4, 5, 5)))
    w = jnp.asarray(rng.standard_normal(kernel[::-1]))
  padding = kwargs.pop('padding')
  ours = pointwise_conv.conv(x, w, (1, 1), padding, **kwargs)
  want = jax.lax.conv_general_dilated(x, w, (1, 1), padding, **kwargs)
  np.testing.assert_array_equal(ours, want)
  program = str(jax.make_jaxpr(
      lambda x, w: pointwise_conv.conv(x, w, (1, 1), padding, **kwargs))(x, w))
  assert 'conv_general_dilated' in program


def _float64_modules(pointwise_matmul):
  """Two blocks of the small tower (1x1 reduce, expand and strided skip
  projection) and a small DRN-18 with its decoder (projections, decoder 1x1s,
  classifier), in float64."""
  blocks = tuple(tvn.BlockSpec.from_config(b) for b in base.SMALL_TOWER[:2])
  return (tvn.TowerStage(blocks, jnp.float64,
                         pointwise_matmul=pointwise_matmul),
          drn.DilatedResNet18(4, widths=(4, 8, 8, 8), decoder_features=4,
                              dtype=jnp.float64,
                              pointwise_matmul=pointwise_matmul))


@pytest.mark.parametrize('which,shape', [(0, (2, 4, 16, 16, 3)),
                                         (1, (2, 16, 16, 3))])
def test_a_tower_and_the_drn_give_the_same_values_and_gradients(
    float64, which, shape):
  del float64
  x = jnp.asarray(np.random.default_rng(2).standard_normal(shape))
  results = []
  for matmul in (False, True):
    module = _float64_modules(matmul)[which]
    variables = jax.tree.map(lambda v: v.astype(jnp.float64),
                             module.init(jax.random.PRNGKey(0), x, False))

    def loss(params, x, module=module, variables=variables):
      y, _ = module.apply({**variables, 'params': params}, x, True,
                          mutable=['batch_stats'])
      return jnp.sum(jnp.sin(y))
    results.append((variables, jax.value_and_grad(loss, argnums=(0, 1))(
        variables['params'], x)))
  (v_conv, (l_conv, g_conv)), (v_mm, (l_mm, g_mm)) = results
  # The same parameters: checkpoints are interchangeable between the forms.
  jax.tree.map(np.testing.assert_array_equal, v_conv, v_mm)
  np.testing.assert_allclose(l_mm, l_conv, rtol=1e-10)
  for want, got in zip(jax.tree.leaves(g_conv), jax.tree.leaves(g_mm)):
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)


def test_the_model_runs_every_1x1_convolution_as_a_matrix_product():
  config = synthetic.get_config('smoke')
  video = jnp.zeros((1, 2, 32, 32, 3), jnp.uint8)
  counts = {}
  for choice in ('conv', 'matmul'):
    config.model.pointwise_convs = choice
    model = airstreams.build_model(config.model, num_classes=6,
                                   num_seg_classes=4)
    variables = jax.eval_shape(lambda model=model: model.init(
        jax.random.PRNGKey(0), video, train=False))
    program = str(jax.make_jaxpr(lambda v, model=model: model.apply(
        v, video, train=False))(variables))
    counts[choice] = program.count('conv_general_dilated')
  pointwise_kernels = [
      k for k in jax.tree.leaves(variables['params'])
      if k.ndim >= 4 and all(d == 1 for d in k.shape[:-2])]
  assert pointwise_kernels
  assert counts['conv'] - counts['matmul'] == len(pointwise_kernels)


def test_build_model_chooses_matrix_products_on_cpu():
  config = synthetic.get_config('smoke')
  for choice, matmul in (('auto', True), ('matmul', True), ('conv', False)):
    config.model.pointwise_convs = choice
    assert airstreams.build_model(
        config.model, num_classes=6,
        num_seg_classes=4).pointwise_matmul == matmul
  config.model.pointwise_convs = 'dot'
  with pytest.raises(ValueError, match="pointwise_convs='dot' is unknown"):
    airstreams.build_model(config.model, num_classes=6, num_seg_classes=4)


@pytest.mark.parametrize('in_channels', [3, 16])
def test_bfloat16_kernel_gradient_is_close_to_float32s(in_channels):
  """Both backward forms in bfloat16 (a sum over 16,384 positions) keep
  the kernel's dtype and stay within bfloat16's rounding of float32's.
  (XLA:CPU's bfloat16 sum measured no worse here, so this does not show
  the float32 accumulation the code asks for.)"""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((4, 64, 64, in_channels)).astype(np.float32)
  w = rng.standard_normal((1, 1, in_channels, 8)).astype(np.float32)
  probe = rng.standard_normal((4, 64, 64, 8)).astype(np.float32)

  def kernel_gradient(dtype):
    def loss(w):
      y = pointwise_conv.conv(jnp.asarray(x, dtype), w, (1, 1), 'SAME',
                              dimension_numbers=_NHWC)
      return jnp.sum(y.astype(jnp.float32) * probe)
    return jax.grad(loss)(jnp.asarray(w, dtype))

  want, got = kernel_gradient(jnp.float32), kernel_gradient(jnp.bfloat16)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), want,
                             rtol=0.02, atol=0.02 * np.abs(want).max())
