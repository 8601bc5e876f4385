"""Coarse-to-fine TV-L1 for the representation-flow layer.

The paper's layer (`rep_flow.tvl1_flow`) linearises the data term once, at
u = 0, so it only sees motion of about a pixel. Classical TV-L1 codes follow
larger motion coarse to fine. This module does that with the layer's own
differentiable iterations (`rep_flow.tvl1_iterations`), following OpenCV's
`cv::optflow::DualTVL1OpticalFlow` (opencv_contrib
`modules/optflow/src/tvl1flow.cpp`):

  * Pyramid: level s + 1 is level s resized by `scale_step` with OpenCV's
    `resize(..., INTER_LINEAR)` (bilinear at half-pixel centres, edge
    clamped, no anti-aliasing), sizes rounded to the nearest integer; levels
    narrower or shorter than 16 px are dropped (as OpenCV does).
  * At the coarsest level the flow starts at 0. At each level, `warps` times:
    warp the second frame and its gradient (computed once per level, before
    warping, as OpenCV does) by the current flow u0, with `remap`'s bicubic
    (Keys, a = -0.75) and zeros outside the image (`BORDER_CONSTANT`), then
    run `num_iter` TV-L1 iterations on the data term linearised at u0,
    rho(u) = I1(x + u0) + grad I1(x + u0) . (u - u0) - I0. The dual
    variables start at 0 at each level and carry over between warps.
  * The flow goes to the next finer level by the same bilinear resize
    (to that level's size) and is multiplied by 1 / scale_step.

What differs from OpenCV, by design: the gradients, divergence and flow
gradient keep the layer's TF boundary semantics (and its learnable kernels
and hyper parameters); there is no median filter, no convergence test (a
fixed number of iterations, so the layer is a fixed computation) and one
outer iteration per warp (OpenCV's `outerIterations` only re-applies the
median filter and the convergence test around its inner iterations), and
no illumination term (OpenCV's `gamma`, 0 by default). With OpenCV's
settings matched (tests/test_flow_pyramid.py) the flows agree away from
the border (24 px, which the boundary handling reaches at 3-5 levels) to a
mean end-point error of 3e-4..6e-4 px (max 6e-3..1e-2 px), and to 5e-4 px
(max) against a float64 reference of the same algorithm.

Everything is differentiable: the resizes are products with fixed
interpolation matrices; the warp gathers the 4x4 neighbourhoods and its
hand-written gradient (a loop over the taps) reaches both the images and
the flow it warps by.
"""

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from airstreams_jax.models import rep_flow

Array = jax.Array

# OpenCV drops pyramid levels with a side shorter than this.
MIN_LEVEL_SIZE = 16
# Keys' cubic convolution coefficient of OpenCV's INTER_CUBIC.
_CUBIC_A = -0.75
INTERPOLATIONS = ('bicubic', 'bilinear')


def pyramid_sizes(height: int, width: int, levels: int,
                  scale_step: float) -> list[tuple[int, int]]:
  """Sizes (H, W) of the pyramid levels, finest first.

  Level s + 1 is level s times `scale_step`, rounded (half to even, as
  OpenCV's `cvRound`); building stops before a level with a side under
  `MIN_LEVEL_SIZE` px, so there may be fewer than `levels` levels.
  """
  sizes = [(height, width)]
  for _ in range(1, levels):
    h, w = sizes[-1]
    h, w = round(h * scale_step), round(w * scale_step)
    if h < MIN_LEVEL_SIZE or w < MIN_LEVEL_SIZE:
      break
    sizes.append((h, w))
  return sizes


def linear_resize_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
  """[n_out, n_in] matrix of OpenCV's INTER_LINEAR resize along one axis.

  Args:
    n_in: Input length.
    n_out: Output length.
    scale: Input pixels per output pixel (OpenCV's scale_x = 1 / fx when the
      factor is given, n_in / n_out when the size is).

  Returns:
    A float32 matrix with out[d] = (1 - f) in[s] + f in[s + 1], where
    s + f = (d + 0.5) scale - 0.5 computed as OpenCV does (float), and the
    position clamped to [0, n_in - 1] (the edge pixel repeated).
  """
  matrix = np.zeros((n_out, n_in), np.float32)
  for d in range(n_out):
    pos = np.float32((d + 0.5) * scale - 0.5)
    s = math.floor(pos)
    frac = np.float32(pos - np.float32(s))
    if s < 0:
      s, frac = 0, np.float32(0)
    if s >= n_in - 1:
      s, frac = n_in - 1, np.float32(0)
    matrix[d, s] += np.float32(1) - frac
    if frac:
      matrix[d, s + 1] += frac
  return matrix


def resize(x: Array, size: tuple[int, int],
           scale: tuple[float, float]) -> Array:
  """OpenCV INTER_LINEAR resize of [..., H, W] images to `size`.

  Args:
    x: Images [..., H, W].
    size: Output (H', W').
    scale: Input pixels per output pixel along (H, W), see
      `linear_resize_matrix`.

  Returns:
    [..., H', W'] images.
  """
  h, w = x.shape[-2:]
  ay = jnp.asarray(linear_resize_matrix(h, size[0], scale[0]), x.dtype)
  ax = jnp.asarray(linear_resize_matrix(w, size[1], scale[1]), x.dtype)
  # Along the width first, then the rows (OpenCV's order).
  x = jnp.einsum('...hw,vw->...hv', x, ax)
  return jnp.einsum('...hv,uh->...uv', x, ay)


def _cubic_weights(t: Array) -> list[Array]:
  """OpenCV's `interpolateCubic`: the 4 weights of taps -1, 0, 1, 2 at t."""
  a = _CUBIC_A
  c0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
  c1 = ((a + 2) * t - (a + 3)) * t * t + 1
  c2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
  return [c0, c1, c2, 1 - c0 - c1 - c2]


def warp(images: Sequence[Array], u1: Array, u2: Array,
         interpolation: str = 'bicubic') -> list[Array]:
  """Samples images at x + u (OpenCV `remap`, zeros outside the image).

  out[k][..., i, j] = images[k][..., i + u2[..., i, j], j + u1[..., i, j]],
  interpolated bicubically (Keys, a = -0.75, OpenCV's INTER_CUBIC) or
  bilinearly, with pixels outside the image read as 0 (BORDER_CONSTANT).

  Args:
    images: Images [..., H, W] of one shape, sampled at the same positions.
    u1: Displacement along the width, [..., H, W].
    u2: Displacement along the rows, [..., H, W].
    interpolation: 'bicubic' or 'bilinear'.

  Returns:
    The warped images, [..., H, W] each; differentiable in images, u1 and
    u2.
  """
  if interpolation not in INTERPOLATIONS:
    raise ValueError(f'interpolation must be one of {INTERPOLATIONS}, got '
                     f'{interpolation!r}.')
  cubic = interpolation == 'bicubic'
  lead = u1.shape[:-2]
  h, w = u1.shape[-2:]
  dtype = images[0].dtype
  # Taps at floor(x) - 1 .. floor(x) + 2 (cubic) or floor(x) .. + 1; the
  # images are padded with `pad` zeros and the positions clamped to where
  # every tap is a padding zero, so any displacement reads 0 outside.
  pad = 4 if cubic else 2
  taps = (-1, 0, 1, 2) if cubic else (0, 1)
  # Positions in float32 at least: x + u in bfloat16 would round to whole
  # pixels beyond x = 256.
  pos_dtype = jnp.promote_types(u1.dtype, jnp.float32)
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=pos_dtype),
                        jnp.arange(w, dtype=pos_dtype), indexing='ij')
  low = 1 - pad - taps[0]
  x = jnp.clip(xs + u1.astype(pos_dtype), low, w + pad - 1 - taps[-1])
  y = jnp.clip(ys + u2.astype(pos_dtype), low, h + pad - 1 - taps[-1])
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  tx = (x - x0).astype(dtype)
  ty = (y - y0).astype(dtype)
  wx = _cubic_weights(tx) if cubic else [1 - tx, tx]
  wy = _cubic_weights(ty) if cubic else [1 - ty, ty]

  hp, wp = h + 2 * pad, w + 2 * pad
  n = math.prod(lead)
  # One flat table per image: each image's indices are offset into the
  # flattened [n * hp * wp] padded images. Channels stay separate arrays
  # (no small trailing axis: its reductions are slow on XLA:CPU).
  tables = tuple(
      jnp.pad(im, [(0, 0)] * len(lead) + [(pad, pad)] * 2).reshape(-1)
      for im in images)
  base = (jnp.arange(n, dtype=jnp.int32) * (hp * wp)).reshape(lead + (1, 1))
  corner = (base + (y0.astype(jnp.int32) + pad + taps[0]) * wp +
            x0.astype(jnp.int32) + pad + taps[0])
  return list(_interpolate(wp, tables, corner, tuple(wx), tuple(wy)))


def _gather(table: Array, index: Array) -> Array:
  return table.at[index].get(mode='promise_in_bounds')


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _interpolate(row_stride: int, tables: tuple[Array, ...], corner: Array,
                 wx: tuple[Array, ...], wy: tuple[Array, ...]
                 ) -> tuple[Array, ...]:
  """sum_ab wy[a] wx[b] table[corner + a row_stride + b], for each table.

  Its gradient is written by hand (`_interpolate_bwd`): autodiff's 48
  unrolled scatter-adds (bicubic: 16 taps x 3 tables) took XLA:CPU about
  5 s to compile per warp and ran ~6x slower than a loop over the taps.
  """
  outs = []
  for table in tables:
    out = 0.0
    for a, wa in enumerate(wy):
      row = 0.0
      for b, wb in enumerate(wx):
        row = row + wb * _gather(table, corner + (a * row_stride + b))
      out = out + wa * row
    outs.append(out)
  return tuple(outs)


def _interpolate_fwd(row_stride, tables, corner, wx, wy):
  outs = _interpolate(row_stride, tables, corner, wx, wy)
  return outs, (tables, corner, wx, wy)


def _interpolate_bwd(row_stride, residuals, cotangents):
  tables, corner, wx, wy = residuals
  wx, wy = jnp.stack(wx), jnp.stack(wy)
  a_of, b_of = np.meshgrid(np.arange(len(wy)), np.arange(len(wx)),
                           indexing='ij')

  # A loop over the taps (not unrolled: 16 taps x 3 tables of scatters
  # took XLA:CPU seconds to compile per warp); each step scatters one tap's
  # weighted cotangents into the tables, in place.
  def tap(carry, ab):
    d_tables, d_wx, d_wy = carry
    a, b = ab
    index = corner + (a * row_stride + b)
    weight = wy[a] * wx[b]
    new_tables = []
    dot = 0.0
    for table, d_table, cot in zip(tables, d_tables, cotangents):
      new_tables.append(d_table.at[index].add(cot * weight,
                                              mode='promise_in_bounds'))
      dot = dot + cot * _gather(table, index)
    d_wx = d_wx.at[b].add(wy[a] * dot)
    d_wy = d_wy.at[a].add(wx[b] * dot)
    return (tuple(new_tables), d_wx, d_wy), None

  init = (tuple(jnp.zeros_like(t) for t in tables), jnp.zeros_like(wx),
          jnp.zeros_like(wy))
  (d_tables, d_wx, d_wy), _ = jax.lax.scan(
      tap, init, (jnp.asarray(a_of.ravel()), jnp.asarray(b_of.ravel())))
  return d_tables, None, tuple(d_wx), tuple(d_wy)


_interpolate.defvjp(_interpolate_fwd, _interpolate_bwd)


def tvl1_flow_pyramid(i0: Array, i1: Array, *, theta: Array, lam: Array,
                      tau: Array, img_grad_x: Array, img_grad_y: Array,
                      div_x: Array, div_y: Array, flow_grad_x: Array,
                      flow_grad_y: Array, num_iter: int, levels: int,
                      warps: int, scale_step: float,
                      interpolation: str = 'bicubic'
                      ) -> tuple[Array, Array]:
  """Coarse-to-fine TV-L1 (see the module docstring).

  Args:
    i0: First frames [..., H, W] (normalised to [0, 255]).
    i1: Second frames [..., H, W].
    theta, lam, tau, img_grad_x, img_grad_y, div_x, div_y, flow_grad_x,
      flow_grad_y: as in `rep_flow.tvl1_flow`.
    num_iter: TV-L1 iterations per warp (static).
    levels: Pyramid levels (at most; see `pyramid_sizes`).
    warps: Linearisations (warps) per level.
    scale_step: Size ratio of consecutive levels, in (0, 1).
    interpolation: Of the warp, 'bicubic' (OpenCV's) or 'bilinear'.

  Returns:
    (u1, u2): displacement along the width and along the rows, [..., H, W].
  """
  if levels < 1 or warps < 1:
    raise ValueError(f'levels and warps must be >= 1, got {levels}, {warps}.')
  if not 0 < scale_step < 1:
    raise ValueError(f'scale_step must be in (0, 1), got {scale_step}.')
  sizes = pyramid_sizes(*i0.shape[-2:], levels, scale_step)
  down = (1.0 / scale_step, 1.0 / scale_step)
  pyramid = [(i0, i1)]
  for size in sizes[1:]:
    pyramid.append(tuple(resize(x, size, down) for x in pyramid[-1]))
  params = dict(theta=theta, lam=lam, tau=tau, div_x=div_x, div_y=div_y,
                flow_grad_x=flow_grad_x, flow_grad_y=flow_grad_y,
                num_iter=num_iter)

  u = jnp.zeros((2,) + i0.shape[:-2] + sizes[-1], i0.dtype)
  for level in reversed(range(len(sizes))):
    j0, j1 = pyramid[level]
    # The gradient of the second frame, warped with it (OpenCV's order).
    stack = (j1, rep_flow.central_grad(j1, img_grad_x, -1),
             rep_flow.central_grad(j1, img_grad_y, -2))

    # Checkpointed: the backward pass recomputes the warp (cheap) instead of
    # keeping its padded tables, tap indices and weights for every warp.
    @jax.checkpoint
    def linearise(stack, u, j0=j0):
      i1w, gx, gy = warp(stack, u[0], u[1], interpolation)
      rho_c = i1w - gx * u[0] - gy * u[1] - j0 + rep_flow._EPS
      return gx, gy, rho_c

    def one_warp(carry, _, stack=stack):
      gx, gy, rho_c = linearise(stack, carry[0])
      return rep_flow.tvl1_iterations(gx, gy, rho_c, carry, **params), None

    zeros = jnp.zeros_like(u)
    (u, _, _), _ = jax.lax.scan(one_warp, (u, zeros, zeros), None,
                                length=warps)
    if level:
      size = sizes[level - 1]
      up = (sizes[level][0] / size[0], sizes[level][1] / size[1])
      u = resize(u, size, up) * (1.0 / scale_step)
  return u[0], u[1]
