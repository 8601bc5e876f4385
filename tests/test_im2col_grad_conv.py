"""The im2col-gradient convolution: the plain convolution's values and
gradients (float64, so only rounding can differ), a tower's gradients with
and without it, and the model's choice of it."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from airstreams_jax.models import airstreams
from airstreams_jax.models import im2col_grad_conv
from airstreams_jax.models import tvn
from configs import base
from configs import synthetic
from tests import conv_checks

_NHWC = ('NHWC', 'HWIO', 'NHWC')


@pytest.fixture
def float64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize('shape,kernel,strides,padding', [
    ((2, 12, 12, 3), (3, 3, 3, 5), (2, 2), 'SAME'),
    ((2, 13, 11, 4), (3, 3, 4, 6), (2, 2), 'SAME'),  # Odd sizes.
    ((1, 9, 10, 2), (5, 3, 2, 3), (2, 3), 'VALID'),
    ((1, 8, 8, 3), (3, 3, 3, 4), (1, 1), ((1, 2), (0, 1))),
    ((3, 7, 7, 2), (1, 1, 2, 8), (2, 2), 'SAME'),  # A projection.
    # TVN's temporal convolutions: (k, 1) over [B, T, H*W, C].
    ((2, 5, 12, 4), (3, 1, 4, 6), (1, 1), 'SAME'),
    ((1, 7, 9, 3), (3, 1, 3, 5), (2, 1), 'SAME'),  # Temporal stride 2.
])
def test_values_and_gradients_are_the_plain_convolutions(
    float64, shape, kernel, strides, padding):
  del float64
  conv_checks.assert_matches_the_plain_convolution(
      im2col_grad_conv.conv, shape, kernel, strides, padding, _NHWC)


def test_other_convolutions_are_left_to_xla(float64):
  del float64
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((1, 9, 9, 4)))
  w = jnp.asarray(rng.standard_normal((3, 3, 2, 4)))
  grouped = im2col_grad_conv.conv(x, w, (2, 2), 'SAME', dimension_numbers=(
      _NHWC), feature_group_count=2)
  want = jax.lax.conv_general_dilated(x, w, (2, 2), 'SAME',
                                      dimension_numbers=_NHWC,
                                      feature_group_count=2)
  np.testing.assert_array_equal(grouped, want)


def test_a_towers_gradients_do_not_depend_on_the_choice():
  blocks = tuple(tvn.BlockSpec.from_config(b) for b in base.SMALL_TOWER[:2])
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 4, 16, 16, 3)),
                  jnp.float32)
  grads = []
  for im2col in (False, True):
    stage = tvn.TowerStage(blocks, im2col_grads=im2col)
    variables = stage.init(jax.random.PRNGKey(0), x, False)

    def loss(params, x, stage=stage, variables=variables):
      return jnp.sum(stage.apply({**variables, 'params': params}, x,
                                 False) ** 2)
    # The strided convolutions take the im2col path only when asked (a
    # custom_vjp in the program).
    program = str(jax.make_jaxpr(loss)(variables['params'], x))
    assert ('custom_vjp_call' in program) == im2col
    # Asked, each block's strided spatial convolution and its temporal one.
    temporal = [b for b in variables['params'].values()
                if 'temporal_conv' in b]
    assert temporal and all(spec.stride > 1 for spec in blocks)
    assert len(re.findall(r'name=_conv\b', program)) == (
        len(blocks) + len(temporal) if im2col else 0), program
    grads.append(jax.grad(loss, argnums=(0, 1))(variables['params'], x))
  for want, got in zip(*(jax.tree.leaves(g) for g in grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # float32.


def test_build_model_chooses_im2col_gradients_on_cpu():
  config = synthetic.get_config('smoke')
  for choice, im2col in (('auto', True), ('im2col', True), ('xla', False)):
    config.model.conv_gradients = choice
    assert airstreams.build_model(config.model, num_classes=6,
                                  num_seg_classes=4).im2col_grads == im2col
  # Only clips of at least IM2COL_MIN_SIZE pixels take it (the 1x1
  # convolutions' own custom VJP kept out of the count).
  config.model.conv_gradients = 'im2col'
  config.model.pointwise_convs = 'conv'
  model = airstreams.build_model(config.model, num_classes=6,
                                 num_seg_classes=4)
  for size in (32, tvn.IM2COL_MIN_SIZE):
    video = jnp.zeros((1, 2, size, size, 3), jnp.uint8)
    program = str(jax.make_jaxpr(lambda v, video=video: model.apply(
        v, video, train=False))(jax.eval_shape(
            lambda video=video: model.init(jax.random.PRNGKey(0), video,
                                           train=False))))
    assert ('custom_vjp_call' in program) == (size >= tvn.IM2COL_MIN_SIZE)
  config.model.conv_gradients = 'cudnn'
  with pytest.raises(ValueError, match="conv_gradients='cudnn' is unknown"):
    airstreams.build_model(config.model, num_classes=6, num_seg_classes=4)
