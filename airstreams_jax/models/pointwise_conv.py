"""1x1 convolutions as matrix products.

A convolution whose kernel is 1 in every spatial dimension is a matrix
product over the channel axis (after subsampling when strided). XLA:CPU
runs it as a convolution, whose kernel gradient transposes the activations
to feature-major first; as a `dot_general` the forward and both gradients
run in its matrix kernels on the channels-last arrays as they are. Measured
alternating in one process on this 2-core machine (docs/performance.md):
the synthetic train step 0.51 -> 0.42 s and 0.50 -> 0.35 s in two runs, the
paper-scale one 4.5 -> 3.35 s and 4.7 -> 3.3 s.

Use it through `flax.linen.Conv(..., conv_general_dilated=conv)`: it takes
`lax.conv_general_dilated`'s arguments; anything but a channels-last 1x1
kernel without padding, dilation or feature groups goes to
`lax.conv_general_dilated` unchanged. The parameters are the convolution's
(same shapes, same checkpoints); values equal up to float rounding
(tests/test_pointwise_conv.py).
"""

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import jax
from jax import lax
import jax.numpy as jnp


def _is_pointwise(lhs: jnp.ndarray, rhs: jnp.ndarray,
                  window_strides: Sequence[int], padding: Any,
                  lhs_dilation: Any, rhs_dilation: Any,
                  dimension_numbers: Any, feature_group_count: int,
                  kwargs: dict) -> bool:
  spatial = lhs.ndim - 2
  numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                       dimension_numbers)
  channels_last = tuple(range(1, lhs.ndim - 1))
  kernel_spatial = tuple(range(rhs.ndim - 2))
  no_pads = (padding in ('SAME', 'VALID') or
             all(tuple(p) == (0, 0) for p in padding))
  return (len(window_strides) == spatial and
          numbers.lhs_spec == (0, lhs.ndim - 1) + channels_last and
          numbers.out_spec == numbers.lhs_spec and
          numbers.rhs_spec == (rhs.ndim - 1, rhs.ndim - 2) + kernel_spatial and
          all(k == 1 for k in rhs.shape[:spatial]) and no_pads and
          feature_group_count == 1 and not kwargs and
          all(d == 1 for d in (lhs_dilation or (1,) * spatial)) and
          all(d == 1 for d in (rhs_dilation or (1,) * spatial)))


def conv(lhs: jnp.ndarray, rhs: jnp.ndarray, window_strides: Sequence[int],
         padding: Union[str, Sequence[Tuple[int, int]]], *,
         lhs_dilation: Any = None, rhs_dilation: Any = None,
         dimension_numbers: Any = None, feature_group_count: int = 1,
         precision: Any = None, **kwargs) -> jnp.ndarray:
  """`lax.conv_general_dilated`, as a matrix product for 1x1 kernels."""
  if not _is_pointwise(lhs, rhs, window_strides, padding, lhs_dilation,
                       rhs_dilation, dimension_numbers, feature_group_count,
                       kwargs):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision,
        **kwargs)
  if any(s != 1 for s in window_strides):
    # A 1x1 kernel with stride s reads every s-th position from the first
    # (SAME and VALID agree: a 1-wide window needs no padding).
    lhs = lhs[(slice(None),) + tuple(slice(None, None, s)
                                     for s in window_strides)]
  kernel = rhs.reshape(rhs.shape[-2:])
  if precision is not None:
    return lax.dot_general(lhs, kernel, (((lhs.ndim - 1,), (0,)), ((), ())),
                           precision=precision)
  return _product(lhs, kernel)


# The kernel gradient of `x @ kernel` sums x[p, i] * dy[p, o] over every
# position p. As a `dot_general` contracting the clip's axes [B, T, H, W]
# together, XLA:CPU first copies an operand to feature-major ([C, P]),
# fusing its producer (a BatchNorm, forward or backward) into that
# transposing copy, which its loop emitter runs slowly: in the paper-scale
# step the towers' first 1x1 convolutions (2 flow or teacher channels, 3
# colours in; 64 out at 112 px) spent 700 ms of a 3.2 s step in three such
# copies (the flow tower's alone took 278 ms, the same values written
# unpermuted 11 ms), the 64-channel ones at 56 px 45 ms each. So the
# backward pass below computes the kernel gradient of a convolution with
# this few input channels as one reduction over the positions per input
# channel, on dy as it is (paper step 2.94 -> 2.50 s), and otherwise as the
# product of the two arrays flattened to [P, C]: contracting their leading
# axis, XLA:CPU calls a matrix product that reads the first transposed, with
# no copy (2.48 -> 2.29 s, and 2.27 -> 2.10 s with the temporal convolutions'
# im2col gradients in both; before it, `optimization_barrier` on dy, which
# left a plain copy to transpose, had taken 2.54 -> 2.43 s; each alternating
# in one process, docs/performance_log.md).
FEW_INPUT_CHANNELS = 4


@jax.custom_vjp
def _product(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _product_fwd(x, kernel):
  return _product(x, kernel), (x, kernel)


def _product_bwd(residuals, dy):
  x, kernel = residuals
  positions = tuple(range(x.ndim - 1))
  # Accumulated in at least float32 (bfloat16 compute).
  accumulate = jnp.promote_types(jnp.result_type(x, dy), jnp.float32)
  if kernel.shape[0] <= FEW_INPUT_CHANNELS:
    wide_dy = dy.astype(accumulate)
    d_kernel = jnp.stack([
        jnp.sum(x[..., i:i + 1].astype(accumulate) * wide_dy, axis=positions)
        for i in range(kernel.shape[0])]).astype(kernel.dtype)
  else:
    # [P, C_in]^T @ [P, C_out] on the arrays as they are: see above.
    d_kernel = lax.dot_general(x.reshape(-1, x.shape[-1]),
                               dy.reshape(-1, dy.shape[-1]),
                               (((0,), (0,)), ((), ())),
                               preferred_element_type=accumulate)
    d_kernel = d_kernel.astype(kernel.dtype)
  d_x = lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())))
  return d_x.astype(x.dtype), d_kernel


_product.defvjp(_product_fwd, _product_bwd)


def conv_if(enabled: bool) -> Optional[Callable[..., jnp.ndarray]]:
  """`conv` for `flax.linen.Conv(conv_general_dilated=...)` when enabled,
  else None (flax's default, `lax.conv_general_dilated`). Safe to pass to
  any convolution: only 1x1 kernels change form."""
  return conv if enabled else None
