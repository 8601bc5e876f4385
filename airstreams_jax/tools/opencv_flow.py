"""OpenCV's classical TV-L1 as the reference of the representation-flow
layer, and how the two are scored against each other.

  pip install -e '.[opencv]'   # opencv-contrib-python-headless (cv2.optflow)

Used by `real_video_figures` (the flow comparison and the learned flow's
agreement) and by the study `experiments/compare_opencv_tvl1.py`.
"""

import numpy as np

try:
  import cv2
except ImportError as e:  # An optional dependency, for the comparison only.
  raise ImportError("airstreams_jax/tools/opencv_flow.py needs OpenCV's "
                    "contrib modules: pip install -e '.[opencv]'") from e

# TV-L1 hyper parameters of the layer at initialisation, and OpenCV's.
THETA = 0.3
LAMBDA = 0.15
TAU = 0.25


def normalise(clip: np.ndarray) -> np.ndarray:
  """Min-max normalises a clip to [0, 255] as the layer does (per clip)."""
  mn, mx = clip.min(), clip.max()
  if mx <= mn:
    return np.zeros_like(clip)
  return 255.0 * (clip - mn) / (mx - mn)


def opencv_tvl1(iters=None, levels: int = 1, warps: int = 1,
                scale_step: float = 0.8):
  """Creates OpenCV's TV-L1; `iters=None` keeps all of OpenCV's defaults.

  Args:
    iters: Iterations per warp of the matched configuration (`levels`
      scales `scale_step` apart, `warps` warps, no median filter, no early
      stop), or None for the default configuration (5 scales, 5 warps, a
      median filter, iterating to convergence).
    levels: Pyramid levels of the matched configuration.
    warps: Warps per level of the matched configuration.
    scale_step: Scale step of the matched configuration.

  Returns:
    A `cv2.optflow.DualTVL1OpticalFlow`.
  """
  tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
  tvl1.setTheta(THETA)
  tvl1.setLambda(LAMBDA)  # Weights the data term, as our lambda does.
  tvl1.setTau(TAU)
  if iters is not None:
    tvl1.setScalesNumber(levels)
    tvl1.setScaleStep(scale_step)
    tvl1.setWarpingsNumber(warps)
    tvl1.setOuterIterations(1)
    tvl1.setInnerIterations(iters)
    # OpenCV stops once sum |u_k - u_{k-1}|^2 <= epsilon^2 * H * W.
    tvl1.setEpsilon(0.0)
    # Values <= 1 skip the median filter (applied before each outer step).
    tvl1.setMedianFiltering(1)
  return tvl1


def reference_flows(pairs: np.ndarray) -> np.ndarray:
  """OpenCV's default TV-L1 of grey pairs [N, 2, H, W] already normalised
  to [0, 255] as the layer normalises them -> [N, H, W, 2].

  OpenCV expects float32 in [0, 1] and multiplies it by 255 itself: both
  then see the same intensities, so the same effective lambda.
  """
  tvl1 = opencv_tvl1(None)
  return np.stack([tvl1.calc(*(p / 255.0).astype(np.float32), None)
                   for p in pairs])


def moving_stats(ours: np.ndarray, ref: np.ndarray) -> tuple:
  """On the pixels where |ref| > 1 px: (EPE, direction within 45 degrees,
  |ours| / |ref|), one value per pixel."""
  moving = np.linalg.norm(ref, axis=-1) > 1.0
  a, b = ours[moving].astype(np.float64), ref[moving].astype(np.float64)
  na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
  cos = np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-12)
  return (np.linalg.norm(a - b, axis=-1), cos >= np.cos(np.pi / 4), na / nb)


def agreement(ours: np.ndarray, ref: np.ndarray) -> dict:
  """The issue's three figures over the pixels moving > 1 px in `ref`:
  mean EPE, the share with direction within 45 degrees, the median
  magnitude ratio; and the share of pixels moving (NaN where none move)."""
  errors, hits, ratio = moving_stats(ours, ref)
  if not errors.size:
    return dict(moving=0.0, epe=np.nan, direction_45=np.nan,
                magnitude_ratio=np.nan)
  return dict(moving=float(errors.size / np.prod(ref.shape[:-1])),
              epe=float(errors.mean()), direction_45=float(hits.mean()),
              magnitude_ratio=float(np.median(ratio)))
