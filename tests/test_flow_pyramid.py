"""Tests for airstreams_jax.models.flow_pyramid (coarse-to-fine TV-L1).

Three references:
  * an independent float64 NumPy implementation of the coarse-to-fine
    algorithm below (per-axis interpolation, Keys' kernel from its piecewise
    definition, plain TV-L1 loops), with either the layer's TF boundary
    semantics or OpenCV's;
  * OpenCV itself (`cv2.resize`, `cv2.remap`, `DualTVL1OpticalFlow` with the
    same pyramid, warps and iterations), where opencv-contrib is installed
    (requirements-test.txt);
  * a real frame pair from ../shared/realdata, where it exists.
"""

import os

import flax
import jax
import jax.numpy as jnp
from jax import test_util
import numpy as np
import pytest

from airstreams_jax import errors
from airstreams_jax.models import flow_pyramid
from airstreams_jax.models import rep_flow
import flow_gradient_checks

# The real clips live beside the repository, never in it (PROVENANCE.md).
REALDATA = os.path.normpath(os.path.join(
    os.path.dirname(__file__), '..', '..', 'shared', 'realdata'))

_THETA, _LAMBDA, _TAU = 0.3, 0.15, 0.25
_PARAMS = dict(theta=_THETA, lam=_LAMBDA, tau=_TAU,
               img_grad_x=(-0.5, 0.0, 0.5), img_grad_y=(-0.5, 0.0, 0.5),
               div_x=(-1.0, 1.0), div_y=(-1.0, 1.0), flow_grad_x=(-1.0, 1.0),
               flow_grad_y=(-1.0, 1.0))


def _cv2():
  cv2 = pytest.importorskip('cv2')
  if not hasattr(cv2, 'optflow'):
    pytest.skip('cv2 has no optflow (pip install -r requirements-test.txt: '
                'opencv-contrib-python-headless)')
  return cv2


# ---------------------------------------------------------------------------
# Float64 NumPy reference. Images are [H, W]; x is the width (axis 1).
# ---------------------------------------------------------------------------


def _np_resize(img, size, scale):
  """OpenCV INTER_LINEAR: bilinear at half-pixel centres, edge clamped."""
  def axis(n_in, n_out, s):
    pos = np.clip((np.arange(n_out) + 0.5) * s - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    return lo, np.minimum(lo + 1, n_in - 1), pos - lo
  y0, y1, fy = axis(img.shape[0], size[0], scale[0])
  x0, x1, fx = axis(img.shape[1], size[1], scale[1])
  rows = img[:, x0] * (1 - fx) + img[:, x1] * fx
  return rows[y0] * (1 - fy)[:, None] + rows[y1] * fy[:, None]


def _keys(d, a=-0.75):
  """Keys' cubic convolution kernel at distance d."""
  d = np.abs(d)
  return np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                  np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a,
                           0.0))


def _np_warp(img, u1, u2, cubic=True):
  """img sampled at (x + u1, y + u2); pixels outside the image read 0."""
  h, w = img.shape
  yy, xx = np.mgrid[0:h, 0:w]
  x, y = xx + u1, yy + u2
  x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
  taps = (-1, 0, 1, 2) if cubic else (0, 1)
  kernel = _keys if cubic else (lambda d: np.maximum(1 - np.abs(d), 0))
  out = np.zeros((h, w))
  for dy in taps:
    for dx in taps:
      r, c = y0 + dy, x0 + dx
      inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
      value = np.where(inside, img[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)],
                       0.0)
      out += kernel(y - r) * kernel(x - c) * value
  return out


def _shift(a, k, axis):
  """b[i] = a[i + k] along `axis`, zero where i + k is outside."""
  out = np.zeros_like(a)
  n = a.shape[axis]
  src = [slice(None)] * a.ndim
  dst = [slice(None)] * a.ndim
  src[axis] = slice(max(k, 0), n + min(k, 0))
  dst[axis] = slice(max(-k, 0), n - max(k, 0))
  out[tuple(dst)] = a[tuple(src)]
  return out


def _np_ops(boundary, prm):
  """(image gradient, divergence, flow gradient) of a boundary semantics."""
  if boundary == 'tf':
    def grad(i):
      return [k[0] * _shift(i, -1, ax) + k[1] * i + k[2] * _shift(i, 1, ax)
              for k, ax in ((prm['img_grad_x'], 1), (prm['img_grad_y'], 0))]

    def div(px, py):
      out = 0.0
      for p, k, ax in ((px, prm['div_x'], 1), (py, prm['div_y'], 0)):
        last = _shift(p, 0, ax)
        np.moveaxis(last, ax, 0)[-1] = 0  # TF drops p[n - 1].
        out = out + k[0] * _shift(p, -1, ax) + k[1] * last
      return out

    def fgrad(u):
      return [k[0] * u + k[1] * _shift(u, 1, ax)
              for k, ax in ((prm['flow_grad_x'], 1), (prm['flow_grad_y'], 0))]
    return grad, div, fgrad

  # OpenCV (tvl1flow.cpp): centeredGradient, divergence, forwardGradient.
  def grad(i):
    out = []
    for ax in (1, 0):
      g = 0.5 * (_shift(i, 1, ax) - _shift(i, -1, ax))
      first = [slice(None)] * 2
      last = [slice(None)] * 2
      first[ax], last[ax] = 0, -1
      g[tuple(first)] = 0.5 * (np.take(i, 1, ax) - np.take(i, 0, ax))
      g[tuple(last)] = 0.5 * (np.take(i, -1, ax) - np.take(i, -2, ax))
      out.append(g)
    return out

  def div(px, py):
    return px - _shift(px, -1, 1) + py - _shift(py, -1, 0)

  def fgrad(u):
    out = []
    for ax in (1, 0):
      g = _shift(u, 1, ax) - u
      np.moveaxis(g, ax, 0)[-1] = 0  # Zero on the last column / row.
      out.append(g)
    return out
  return grad, div, fgrad


def _np_flow(i0, i1, levels, warps, num_iter, scale_step=0.8, cubic=True,
             boundary='tf', prm=None):
  """Coarse-to-fine TV-L1 in float64; images [H, W] in [0, 255]."""
  prm = dict(_PARAMS, **(prm or {}))
  prm = {k: np.asarray(v, np.float64) for k, v in prm.items()}
  tf = boundary == 'tf'
  grad, div, fgrad = _np_ops(boundary, prm)
  theta = abs(prm['theta']) + 1e-12 if tf else prm['theta']
  l_t, taut = prm['lam'] * theta, prm['tau'] / theta
  g_eps = 1e-12 if tf else np.finfo(np.float32).eps
  sizes = [i0.shape]
  while len(sizes) < levels:
    h, w = (round(s * scale_step) for s in sizes[-1])
    if min(h, w) < 16:
      break
    sizes.append((h, w))
  pyramid = [(np.float64(i0), np.float64(i1))]
  for size in sizes[1:]:
    pyramid.append(tuple(_np_resize(i, size, (1 / scale_step,) * 2)
                         for i in pyramid[-1]))
  u1 = u2 = np.zeros(sizes[-1])
  for level in reversed(range(len(sizes))):
    j0, j1 = pyramid[level]
    gx1, gy1 = grad(j1)
    p = [np.zeros_like(j0) for _ in range(4)]  # p11, p12, p21, p22.
    for _ in range(warps):
      i1w, gx, gy = (_np_warp(a, u1, u2, cubic) for a in (j1, gx1, gy1))
      g2 = gx**2 + gy**2 + (1e-12 if tf else 0.0)
      rho_c = i1w - gx * u1 - gy * u2 - j0
      for _ in range(num_iter):
        rho = rho_c + gx * u1 + gy * u2
        with np.errstate(divide='ignore', invalid='ignore'):
          c = np.where(rho < -l_t * g2, l_t, np.where(
              rho > l_t * g2, -l_t, np.where(g2 > g_eps, -rho / g2, 0.0)))
        u1 = u1 + c * gx + theta * div(p[0], p[1])
        u2 = u2 + c * gy + theta * div(p[2], p[3])
        for k, u in ((0, u1), (2, u2)):
          ux, uy = fgrad(u)
          norm = 1 + taut * np.sqrt(ux**2 + uy**2 + (1e-12 if tf else 0.0))
          p[k] = (p[k] + taut * ux) / norm
          p[k + 1] = (p[k + 1] + taut * uy) / norm
    if level:
      size = sizes[level - 1]
      up = (sizes[level][0] / size[0], sizes[level][1] / size[1])
      u1, u2 = (_np_resize(u, size, up) / scale_step for u in (u1, u2))
  return np.stack([u1, u2], -1)


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------


def _jax_flow(i0, i1, levels, warps, num_iter, scale_step=0.8,
              interpolation='bicubic', prm=None):
  """flow_pyramid.tvl1_flow_pyramid on [H, W] or [N, H, W] images."""
  prm = {k: jnp.asarray(v, jnp.float32)
         for k, v in dict(_PARAMS, **(prm or {})).items()}
  fn = jax.jit(lambda a, b: flow_pyramid.tvl1_flow_pyramid(
      a, b, num_iter=num_iter, levels=levels, warps=warps,
      scale_step=scale_step, interpolation=interpolation, **prm))
  u1, u2 = fn(jnp.asarray(i0, jnp.float32), jnp.asarray(i1, jnp.float32))
  return np.stack([np.asarray(u1), np.asarray(u2)], -1)


def _opencv_flow(i0, i1, levels, warps, num_iter, scale_step=0.8):
  """OpenCV's DualTVL1 set as the layer: same pyramid, warps, iterations;
  one outer iteration, no median filter, epsilon 0 (no early stop)."""
  cv2 = _cv2()
  tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
  tvl1.setTheta(_THETA)
  tvl1.setLambda(_LAMBDA)
  tvl1.setTau(_TAU)
  tvl1.setScalesNumber(levels)
  tvl1.setScaleStep(scale_step)
  tvl1.setWarpingsNumber(warps)
  tvl1.setOuterIterations(1)
  tvl1.setInnerIterations(num_iter)
  tvl1.setEpsilon(0.0)
  tvl1.setMedianFiltering(1)
  # float32 input in [0, 1]: OpenCV multiplies it by 255.
  return tvl1.calc(np.float32(i0 / 255), np.float32(i1 / 255), None)


def _epe(a, b, border=0):
  e = np.linalg.norm(np.asarray(a, np.float64) - b, axis=-1)
  return e[border:e.shape[0] - border, border:e.shape[1] - border]


def _texture(size, shift, seed=0, sigma=2.0):
  """Blurred noise in [0, 255] and the same texture moved by `shift` =
  (dx, dy) whole pixels: frame 1 at x + shift is frame 0 at x."""
  rng = np.random.default_rng(seed)
  ndimage = pytest.importorskip('scipy.ndimage')
  big = ndimage.gaussian_filter(rng.uniform(0, 255, (size + 20, size + 20)),
                                sigma)
  big = 255 * (big - big.min()) / (big.max() - big.min())
  dx, dy = shift
  i0 = big[10:10 + size, 10:10 + size]
  i1 = big[10 - dy:10 - dy + size, 10 - dx:10 - dx + size]
  return i0.astype(np.float32), i1.astype(np.float32)


# ---------------------------------------------------------------------------
# Pieces: pyramid sizes, resize, warp.
# ---------------------------------------------------------------------------


def test_pyramid_sizes_round_and_stop_at_16_px():
  assert flow_pyramid.pyramid_sizes(32, 32, 5, 0.8) == [
      (32, 32), (26, 26), (21, 21), (17, 17)]  # 14 px is dropped.
  assert flow_pyramid.pyramid_sizes(112, 149, 5, 0.5) == [
      (112, 149), (56, 74), (28, 37)]  # 74.5 rounds to even.
  assert flow_pyramid.pyramid_sizes(15, 40, 3, 0.8) == [(15, 40)]


@pytest.mark.parametrize('factor', [0.8, 0.5, 0.7])
def test_resize_matches_numpy_and_opencv(factor):
  """Down by a factor (the pyramid) and up to a size (the flow)."""
  rng = np.random.default_rng(0)
  img = rng.uniform(0, 255, (37, 45))
  size = tuple(round(s * factor) for s in img.shape)
  down = np.asarray(flow_pyramid.resize(jnp.asarray(img, jnp.float32), size,
                                        (1 / factor, 1 / factor)))
  np.testing.assert_allclose(down, _np_resize(img, size, (1 / factor,) * 2),
                             atol=1e-3)
  up_scale = (size[0] / 37, size[1] / 45)
  up = np.asarray(flow_pyramid.resize(jnp.asarray(down), (37, 45), up_scale))
  np.testing.assert_allclose(up, _np_resize(down, (37, 45), up_scale),
                             atol=1e-3)
  cv2 = pytest.importorskip('cv2')
  want = cv2.resize(np.float32(img), None, fx=factor, fy=factor,
                    interpolation=cv2.INTER_LINEAR)
  assert want.shape == size
  np.testing.assert_allclose(down, want, atol=5e-4)
  want = cv2.resize(down, (45, 37), interpolation=cv2.INTER_LINEAR)
  np.testing.assert_allclose(up, want, atol=5e-4)


def _warp_case(seed=0):
  rng = np.random.default_rng(seed)
  img = rng.uniform(0, 255, (21, 26))
  # Displacements up to ~8 px: many samples fall partly or wholly outside.
  u1 = rng.normal(0, 3, img.shape)
  u2 = rng.normal(0, 3, img.shape)
  u1[0, :4] = [-40.0, 30.0, -2.5, 26.2]  # Far outside, and the edges.
  return img, u1, u2


@pytest.mark.parametrize('interpolation', flow_pyramid.INTERPOLATIONS)
def test_warp_matches_numpy_and_opencv_remap(interpolation):
  img, u1, u2 = _warp_case()
  cubic = interpolation == 'bicubic'
  images = [jnp.asarray(img, jnp.float32), jnp.asarray(img[::-1], jnp.float32)]
  ours = flow_pyramid.warp(images, jnp.asarray(u1, jnp.float32),
                           jnp.asarray(u2, jnp.float32), interpolation)
  np.testing.assert_allclose(ours[0], _np_warp(img, u1, u2, cubic), atol=1e-3)
  np.testing.assert_allclose(ours[1], _np_warp(img[::-1], u1, u2, cubic),
                             atol=1e-3)
  cv2 = pytest.importorskip('cv2')
  yy, xx = np.mgrid[0:21, 0:26]
  want = cv2.remap(np.float32(img), np.float32(xx + u1), np.float32(yy + u2),
                   cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR)
  err = np.abs(np.asarray(ours[0]) - want)
  print(f'{interpolation}: max |ours - cv2.remap| {err.max():.1e}')
  assert err.max() <= 1e-3


def test_warp_by_zero_is_the_identity_and_batches():
  rng = np.random.default_rng(1)
  img = jnp.asarray(rng.uniform(0, 255, (2, 3, 9, 11)), jnp.float32)
  zero = jnp.zeros((2, 3, 9, 11))
  for interpolation in flow_pyramid.INTERPOLATIONS:
    out, = flow_pyramid.warp([img], zero, zero, interpolation)
    np.testing.assert_array_equal(out, img)
  # Each leading index is its own image.
  u1 = jnp.asarray(rng.normal(0, 2, (2, 3, 9, 11)), jnp.float32)
  batched, = flow_pyramid.warp([img], u1, -u1)
  alone, = flow_pyramid.warp([img[1, 2]], u1[1, 2], -u1[1, 2])
  np.testing.assert_allclose(batched[1, 2], alone, atol=1e-4)


@pytest.mark.parametrize('interpolation', flow_pyramid.INTERPOLATIONS)
def test_warp_gradients(interpolation):
  """The hand-written gradient of the warp against finite differences."""
  img, u1, u2 = _warp_case(seed=2)
  with jax.enable_x64(True):
    images = jnp.asarray(np.stack([img, img**2 / 255]))

    def f(images, u1, u2):
      return flow_pyramid.warp(list(images), u1, u2, interpolation)

    test_util.check_grads(f, (images, jnp.asarray(u1), jnp.asarray(u2)),
                              order=1, modes=['rev'], eps=1e-5)


# ---------------------------------------------------------------------------
# The coarse-to-fine flow.
# ---------------------------------------------------------------------------


def test_single_scale_settings_are_the_papers_layer():
  """pyramid_levels=1, warps=1 (the defaults) is today's layer, bit for bit,
  whatever the other pyramid options; the pyramid code at one level and one
  warp reduces to it up to float rounding."""
  x = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (2, 3, 20, 24, 3)),
                  jnp.float32)
  default = rep_flow.RepresentationFlow(num_iter=7)
  variables = jax.jit(default.init)(jax.random.PRNGKey(0), x)
  want = jax.jit(default.apply)(variables, x)
  same = rep_flow.RepresentationFlow(num_iter=7, pyramid_levels=1, warps=1,
                                     scale_step=0.5,
                                     warp_interpolation='bilinear')
  np.testing.assert_array_equal(jax.jit(same.apply)(variables, x), want)
  # The generalised path: warp by u = 0, linearise at 0, no resizing.
  clip = np.asarray(x.mean(-1))
  clip = 255 * (clip - clip.min((1, 2, 3), keepdims=True)) / np.ptp(
      clip, axis=(1, 2, 3), keepdims=True)
  flow = _jax_flow(clip[:, :-1], clip[:, 1:], 1, 1, 7)
  np.testing.assert_allclose(flow, np.asarray(want)[:, :-1], atol=2e-5)


@pytest.mark.parametrize('levels,warps,scale_step,interpolation,perturbed', [
    (3, 2, 0.8, 'bicubic', False),
    (2, 3, 0.5, 'bilinear', False),
    (3, 1, 0.7, 'bicubic', True),
])
def test_matches_numpy_float64(levels, warps, scale_step, interpolation,
                               perturbed):
  i0, i1 = _texture(40, (2, -1), seed=4)
  prm = None
  if perturbed:  # Every parameter off its TV-L1 value (theta negative).
    prm = dict(theta=-0.27, lam=0.2, tau=0.21, img_grad_x=(-0.45, 0.02, 0.52),
               img_grad_y=(-0.55, -0.03, 0.47), div_x=(-0.96, 1.03),
               div_y=(-1.02, 0.98), flow_grad_x=(-1.04, 0.97),
               flow_grad_y=(-0.98, 1.01))
  ours = _jax_flow(i0, i1, levels, warps, 8, scale_step, interpolation, prm)
  want = _np_flow(i0, i1, levels, warps, 8, scale_step,
                  cubic=interpolation == 'bicubic', prm=prm)
  assert np.abs(want).max() > 1.0  # A non-trivial flow.
  err = _epe(ours, want)
  print(f'vs float64: max EPE {err.max():.1e} px, mean {err.mean():.1e}')
  assert err.max() <= 2e-3


def test_numpy_reference_is_opencvs_algorithm():
  """With OpenCV's boundary handling the float64 reference reproduces
  DualTVL1 over the whole image: the algorithm (pyramid, warps, upsampling,
  dual variables kept between warps) is OpenCV's; the layer differs from it
  only in the boundary handling (next tests)."""
  i0, i1 = _texture(48, (3, 2), seed=5)
  want = _opencv_flow(i0, i1, 3, 2, 10)
  ours = _np_flow(i0, i1, 3, 2, 10, boundary='opencv')
  err = _epe(ours, want)
  print(f'float64 (OpenCV boundaries) vs OpenCV: max EPE {err.max():.1e}')
  assert np.abs(want).max() > 1.0
  assert err.max() <= 1e-3


def test_matches_opencv_on_a_moving_texture():
  """Both recover a 5-px motion; the single-scale layer cannot."""
  i0, i1 = _texture(80, (4, -3))
  ours = _jax_flow(i0, i1, 5, 3, 10)
  want = _opencv_flow(i0, i1, 5, 3, 10)
  centre = (slice(24, -24), slice(24, -24))  # The central 32 x 32 px.
  err = _epe(ours, want, border=24)
  print(f'texture: EPE to OpenCV, central 32 px: mean {err.mean():.1e} max '
        f'{err.max():.1e}; whole image mean {_epe(ours, want).mean():.1e}')
  # Measured: mean 5.8e-4, max 4.5e-3 px.
  assert err.mean() <= 3e-3 and err.max() <= 3e-2
  for flow in (ours, want):
    assert np.abs(flow[centre] - (4, -3)).max() <= 0.1
  single = _jax_flow(i0, i1, 1, 1, 10)
  assert np.abs(single[centre] - (4, -3)).mean() >= 2.0


def _read_pair(path, index, factor=2):
  """Grey frames index and index + 1, area-downscaled by `factor`."""
  av = pytest.importorskip('av')
  frames = []
  with av.open(path) as container:
    for i, frame in enumerate(container.decode(video=0)):
      if i >= index:
        img = frame.to_ndarray(format='gray').astype(np.float64)
        h, w = (s // factor * factor for s in img.shape)
        frames.append(img[:h, :w].reshape(h // factor, factor, w // factor,
                                          factor).mean((1, 3)))
      if len(frames) == 2:
        break
  pair = np.stack(frames)
  return 255 * (pair - pair.min()) / np.ptp(pair)


def test_matches_opencv_on_a_real_frame_pair():
  path = os.path.join(REALDATA, 'actions', 'BenchPress',
                      'v_BenchPress_g01_c03.avi')
  if not os.path.isfile(path):
    pytest.skip(f'no real clips at {REALDATA}')
  i0, i1 = _read_pair(path, 60)  # 160 x 120, half the pixels move > 1 px.
  ours = _jax_flow(i0, i1, 3, 2, 10)
  want = _opencv_flow(i0, i1, 3, 2, 10)
  moving = np.linalg.norm(want, axis=-1) > 1
  assert moving.mean() > 0.3
  err = _epe(ours, want, border=24)
  print(f'real pair: EPE to OpenCV inside 24 px: mean {err.mean():.1e} max '
        f'{err.max():.1e}; 16 px: mean {_epe(ours, want, 16).mean():.1e}; '
        f'whole: mean {_epe(ours, want).mean():.1e}')
  # Measured: mean 2.5e-4, max 1.0e-2 px (inside 24 px).
  assert err.mean() <= 2e-3 and err.max() <= 5e-2
  numpy_tf = _np_flow(i0, i1, 3, 2, 10)
  assert _epe(ours, numpy_tf).max() <= 2e-3


def test_layer_gradients_match_finite_differences():
  with jax.enable_x64(True):
    rng = np.random.default_rng(6)
    i0, i1 = _texture(20, (1, -1), seed=6)
    x = np.stack([i0, i1])[None, ..., None] / 255.0
    x = jnp.asarray(np.concatenate([x, x[:, ::-1] * 0.9], -1))
    model = rep_flow.RepresentationFlow(
        num_iter=3, bottleneck=2, pyramid_levels=2, warps=2,
        dtype=jnp.float64, param_dtype=jnp.float64)
    params = flax.core.unfreeze(
        jax.jit(model.init)(jax.random.PRNGKey(0), x)['params'])
    params['theta'] = jnp.asarray(0.25)
    w = jnp.asarray(rng.normal(size=(1, 2, 20, 20, 4)))
    # Small: a step of 1e-5 moves some pixels across a threshold of the
    # TV-L1 step (a kink), which shows as a 1e-4 error.
    flow_gradient_checks.check_layer_gradients(
        model, params, x, w,
        (('theta', ()), ('lambda', ()), ('tau', ()), ('img_grad_x', (2,)),
         ('img_grad_y', (0,)), ('div_x', (1,)), ('flow_grad_y', (0,)),
         ('bottleneck_in', (1, 0))),
        eps=1e-7, input_directions=2, rng=rng)


def test_layer_options():
  x = jnp.asarray(np.random.default_rng(7).uniform(0, 1, (1, 3, 24, 24, 3)),
                  jnp.float32)
  model = rep_flow.RepresentationFlow(num_iter=2, pyramid_levels=2, warps=2,
                                      bottleneck=2)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  assert jax.jit(model.apply)(variables, x).shape == (1, 3, 24, 24, 4)
  for bad in (dict(pyramid_levels=0), dict(warps=0), dict(scale_step=1.0),
              dict(scale_step=0.0), dict(warps=2, warp_interpolation='area')):
    with pytest.raises(ValueError):
      rep_flow.RepresentationFlow(num_iter=2, **bad).init(
          jax.random.PRNGKey(0), x)


@pytest.mark.parametrize('key,value', [
    ('pyramid_levels', 0), ('warps', 0), ('scale_step', 1.0),
    ('scale_step', -0.5), ('warp_interpolation', 'cubic')])
def test_config_rejects_bad_values(key, value):
  from airstreams_jax.training import config_checks  # pylint: disable=g-import-not-at-top
  from configs import hmdb51  # pylint: disable=g-import-not-at-top
  config = hmdb51.get_config()
  config_checks.check_values(config)
  config.model.flow[key] = value
  with pytest.raises(errors.ConfigError, match=f'model.flow.{key}'):
    config_checks.check_values(config)
