"""A check shared by the tests of the convolution forms (im2col gradients,
1x1 convolutions as matrix products)."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def assert_matches_the_plain_convolution(conv: Callable[..., Any], shape,
                                         kernel, strides, padding,
                                         numbers) -> str:
  """`conv` (with `lax.conv_general_dilated`'s arguments) gives the plain
  convolution's values, and the gradients of a random projection of them
  with respect to input and kernel, on random float64 inputs (only rounding
  may differ; call it with x64 enabled). Returns `conv`'s jaxpr as text."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape))
  w = jnp.asarray(rng.standard_normal(kernel))

  def plain(x, w):
    return jax.lax.conv_general_dilated(x, w, strides, padding,
                                        dimension_numbers=numbers)

  def ours(x, w):
    return conv(x, w, strides, padding, dimension_numbers=numbers)
  np.testing.assert_allclose(ours(x, w), plain(x, w), rtol=1e-12)
  probe = jnp.asarray(rng.standard_normal(plain(x, w).shape))
  grads = [jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) * probe),
                    argnums=(0, 1))(x, w) for f in (plain, ours)]
  for want, got in zip(*grads):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
  return str(jax.make_jaxpr(ours)(x, w))
