"""Max pooling whose backward pass is elementwise (no select-and-scatter).

The forward pass is `flax.linen.max_pool`'s reduce-window. Its gradient in
JAX is a select-and-scatter, which XLA:CPU rewrites into a reduce-window
carrying an index array (built by an `iota` of the padded input) followed
by a scatter: 54 ms of the paper-scale train step for the DRN's single 3x3
stride-2 pool (16 frames, 56 -> 28 px, 64 channels; docs/performance.md
). Here the backward pass finds, window tap by window tap in
row-major order, the first input equal to the window's maximum (the element
select-and-scatter picks, ties included: after a ReLU whole windows are 0)
and adds the output gradient there through strided padding: elementwise
passes that XLA fuses.

`max_pool(x, window, strides, padding)` takes `nn.max_pool`'s arguments for
NHWC inputs; values and gradients equal its own (tests/test_max_pool.py),
except in a window holding a NaN, whose gradient here goes nowhere
(select-and-scatter's, after comparisons with NaN, to whatever element
follows it); the loss is NaN then, and training stops on it.
"""

import functools
import itertools
from typing import Sequence, Tuple, Union

import jax
from jax import lax
import jax.numpy as jnp

from airstreams_jax.models import im2col_grad_conv

Pads = Tuple[Tuple[int, int], Tuple[int, int]]


def _pool(x: jnp.ndarray, window: Tuple[int, int], strides: Tuple[int, int],
          pads: Pads) -> jnp.ndarray:
  return lax.reduce_window(x, -jnp.inf, lax.max, (1,) + window + (1,),
                           (1,) + strides + (1,), ((0, 0),) + pads + ((0, 0),))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
  return _pool(x, window, strides, pads)


def _max_pool_fwd(x, window, strides, pads):
  y = _pool(x, window, strides, pads)
  return y, (x, y)


def _max_pool_bwd(window, strides, pads, residuals, dy):
  x, y = residuals
  padded = jnp.pad(x, ((0, 0),) + pads + ((0, 0),),
                   constant_values=-jnp.inf)
  _, hp, wp, _ = padded.shape
  _, oh, ow, _ = y.shape
  (sh, sw) = strides
  taken = jnp.zeros(y.shape, jnp.bool_)
  d_padded = jnp.zeros(padded.shape, dy.dtype)
  taps = im2col_grad_conv.window_taps(padded, window, strides)
  for (i, j), tap in zip(itertools.product(*map(range, window)), taps):
    hit = jnp.logical_and(tap == y, jnp.logical_not(taken))
    taken = jnp.logical_or(taken, hit)
    # Tap (i, j) of window (a, b) is padded[i + a sh, j + b sw]: padding
    # with sh - 1 zeros between rows (and sw - 1 between columns) puts each
    # window's share where it came from.
    d_padded = d_padded + lax.pad(
        jnp.where(hit, dy, jnp.zeros_like(dy)), jnp.zeros((), dy.dtype),
        ((0, 0, 0), (i, hp - i - (oh - 1) * sh - 1, sh - 1),
         (j, wp - j - (ow - 1) * sw - 1, sw - 1), (0, 0, 0)))
  (top, _), (left, _) = pads
  dx = d_padded[:, top:top + x.shape[1], left:left + x.shape[2], :]
  return (dx,)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: jnp.ndarray, window_shape: Sequence[int],
             strides: Sequence[int],
             padding: Union[str, Sequence[Tuple[int, int]]] = 'VALID'
             ) -> jnp.ndarray:
  """`flax.linen.max_pool` of NHWC `x` with the elementwise backward pass."""
  if x.ndim != 4 or len(window_shape) != 2 or len(strides) != 2:
    raise ValueError('max_pool takes NHWC inputs and 2-D windows, got '
                     f'{x.shape}, {window_shape}, {strides}.')
  window, strides = tuple(window_shape), tuple(strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  return _max_pool(x, window, strides, pads)
