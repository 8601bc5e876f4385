"""A 2-D convolution whose gradients are matrix products (im2col).

The forward pass is `lax.conv_general_dilated`. The backward pass gathers
the input's patches ([N*H'*W', kh*kw*C], "im2col") and computes the kernel's
gradient as patches^T @ dy and the input's as the transpose of the gather
applied to dy @ kernel^T. XLA:CPU computes the input gradient of a strided
convolution as a convolution of the dilated output gradient, which its
generic emitter runs slowly, and the kernel gradient after transposing the
activations to feature-major: in the paper-scale train step, the backward
pass of the first TVN block's 3x3 stride-2 convolution (112 px in) took a
third of the step in those two forms (docs/performance_log.md). The matrix
products run in XLA:CPU's fast kernels instead. TVN's temporal convolution
(a (k, 1) kernel over [B, T, H*W, C], temporal stride 1 or 2) takes it too: XLA:CPU
computed its kernel gradient as a convolution whose window spans the whole
clip, after transposing both operands (about 110 ms of each tower's first
block in the paper-scale step).

Use it through `flax.linen.Conv(..., conv_general_dilated=conv)`: it takes
`lax.conv_general_dilated`'s arguments, for NHWC inputs and HWIO kernels
without dilation or feature groups (anything else goes to
`lax.conv_general_dilated` unchanged). Values and gradients equal the plain
convolution's up to float rounding (tests/test_im2col_grad_conv.py).
"""

import functools
from typing import Any, List, Sequence, Tuple, Union

import jax
from jax import lax
import jax.numpy as jnp

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def window_taps(padded: jnp.ndarray, kernel_hw: Tuple[int, int],
                strides: Tuple[int, int]) -> List[jnp.ndarray]:
  """The [N, H', W', C] values of each tap (i, j) of every window over an
  already padded [N, Hp, Wp, C] input, in row-major tap order."""
  n, hp, wp, c = padded.shape
  (kh, kw), (sh, sw) = kernel_hw, strides
  out_h, out_w = (hp - kh) // sh + 1, (wp - kw) // sw + 1
  return [lax.slice(padded, (0, i, j, 0),
                    (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, c),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]


def _patches(x: jnp.ndarray, kernel_hw: Tuple[int, int],
             strides: Tuple[int, int],
             pads: Sequence[Tuple[int, int]]) -> jnp.ndarray:
  """[N, H', W', kh*kw*C] patches of `x` [N, H, W, C], taps major, C minor
  (the order of an HWIO kernel reshaped to [kh*kw*C, F])."""
  x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
  taps = window_taps(x, kernel_hw, strides)
  return jnp.concatenate(taps, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, strides, pads):
  return lax.conv_general_dilated(x, kernel, strides, pads,
                                  dimension_numbers=_NHWC)


def _conv_fwd(x, kernel, strides, pads):
  return _conv(x, kernel, strides, pads), (x, kernel)


def _conv_bwd(strides, pads, residuals, dy):
  x, kernel = residuals
  kh, kw, c, f = kernel.shape
  patches, patches_vjp = jax.vjp(
      lambda x: _patches(x, (kh, kw), strides, pads), x)
  dy = dy.reshape(-1, f)
  d_kernel = (patches.reshape(-1, kh * kw * c).T @ dy).reshape(kernel.shape)
  d_patches = (dy @ kernel.reshape(kh * kw * c, f).T).reshape(patches.shape)
  return patches_vjp(d_patches)[0], d_kernel


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv(lhs: jnp.ndarray, rhs: jnp.ndarray, window_strides: Sequence[int],
         padding: Union[str, Sequence[Tuple[int, int]]], *,
         lhs_dilation: Any = None, rhs_dilation: Any = None,
         dimension_numbers: Any = None, feature_group_count: int = 1,
         precision: Any = None, **kwargs) -> jnp.ndarray:
  """`lax.conv_general_dilated` with im2col gradients (module docstring)."""
  plain = (lhs.ndim == 4 and feature_group_count == 1 and not kwargs and
           precision is None and
           all(d == 1 for d in (lhs_dilation or (1, 1))) and
           all(d == 1 for d in (rhs_dilation or (1, 1))) and
           lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                      dimension_numbers) ==
           lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision,
        **kwargs)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2],
                                  window_strides, padding)
  return _conv(lhs, rhs, tuple(window_strides),
               tuple(tuple(p) for p in padding))
