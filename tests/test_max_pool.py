"""Max pooling with the elementwise backward pass: flax's values and
gradients (float64; ties included), no select-and-scatter, and the model's
choice of it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from airstreams_jax.models import airstreams
from airstreams_jax.models import max_pool
from airstreams_jax.models import tvn
from configs import synthetic


@pytest.fixture
def float64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('shape,window,strides,padding', [
    ((2, 9, 11, 3), (3, 3), (2, 2), 'SAME'),  # The DRN's, at odd sizes.
    ((1, 8, 8, 2), (3, 3), (2, 2), 'SAME'),
    ((2, 7, 6, 4), (2, 3), (1, 2), 'VALID'),
    ((1, 10, 9, 3), (3, 2), (3, 1), ((1, 1), (0, 1))),
])
def test_values_and_gradients_are_flaxs(float64, shape, window, strides,
                                        padding, ties):
  del float64
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape)
  if ties:  # Whole windows of equal values, as after a ReLU.
    x = np.maximum(np.round(x), 0.0)
  x = jnp.asarray(x)
  want = nn.max_pool(x, window, strides, padding=padding)
  got = max_pool.max_pool(x, window, strides, padding)
  np.testing.assert_array_equal(got, want)
  probe = jnp.asarray(rng.standard_normal(want.shape))

  def gradient(pool):
    return jax.grad(lambda x: jnp.sum(pool(x) * probe))(x)
  want_grad = gradient(lambda x: nn.max_pool(x, window, strides,
                                             padding=padding))
  got_grad = gradient(lambda x: max_pool.max_pool(x, window, strides,
                                                  padding))
  # Each input's gradient is a sum over the windows that picked it: only
  # the order of those sums may differ.
  np.testing.assert_allclose(got_grad, want_grad, rtol=0, atol=1e-12)
  # And the pick is exact: one input per window, the first maximum.
  assert int(jnp.sum(got_grad != 0)) == int(jnp.sum(want_grad != 0))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_vmapped_and_in_low_precision(dtype):
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((3, 2, 8, 8, 4)), dtype)

  def gradient(pool):
    return jax.vmap(jax.grad(lambda x: jnp.sum(
        pool(x, (3, 3), (2, 2), 'SAME').astype(jnp.float32) ** 2)))(x)
  want = gradient(lambda x, w, s, p: nn.max_pool(x, w, s, padding=p))
  got = gradient(max_pool.max_pool)
  assert got.dtype == dtype
  np.testing.assert_array_equal(np.asarray(got, np.float32),
                                np.asarray(want, np.float32))


def test_the_backward_pass_has_no_select_and_scatter():
  x = jnp.zeros((2, 8, 8, 3))

  def backward(pool):
    return str(jax.make_jaxpr(jax.grad(
        lambda x: jnp.sum(pool(x, (3, 3), (2, 2), padding='SAME'))))(x))
  assert 'select_and_scatter' in backward(nn.max_pool)
  assert 'select_and_scatter' not in backward(max_pool.max_pool)


def test_rejects_other_layouts():
  with pytest.raises(ValueError, match='NHWC inputs and 2-D windows'):
    max_pool.max_pool(jnp.zeros((2, 8, 8)), (3,), (2,), 'SAME')


def test_the_drn_takes_it_with_im2col_gradients_at_64_px_and_up():
  config = synthetic.get_config('smoke')
  for conv_gradients in ('im2col', 'xla'):
    config.model.conv_gradients = conv_gradients
    model = airstreams.build_model(config.model, num_classes=6,
                                   num_seg_classes=4)
    for size in (32, tvn.IM2COL_MIN_SIZE):
      video = jnp.zeros((1, 2, size, size, 3), jnp.uint8)
      variables = jax.eval_shape(
          lambda video=video, model=model: model.init(
              jax.random.PRNGKey(0), video, train=False))
      program = str(jax.make_jaxpr(
          lambda v, video=video, model=model: model.apply(
              v, video, train=False))(variables))
      assert ('name=_max_pool' in program) == (
          conv_gradients == 'im2col' and size >= tvn.IM2COL_MIN_SIZE)
