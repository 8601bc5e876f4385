r"""How well the untrained flow layer sees the actor's motion, per input path.

  python -m experiments.flow_at_input_scale [--clips=64] [--workdirs=W1,W2]

The representation-flow layer at its initial (TV-L1) constants, on the frames
that the model gets from two input paths of synthetic clips (different draws
of the generator: 32 px without a camera pan, 96 px with a 1-px pan):
  synthetic     configs/synthetic.py: generated at 32 px, 10 frames, the
                model reads 8 consecutive frames;
  folder        configs/video_folder.py as the folder tables ran it:
                `make_video_folder`'s 96-px, 16-frame clips, stored at a
                48-px short side, the evaluation's centre clip of 8 frames
                at frame_stride 2 and its centre view (the whole square
                48-px frame) resized to 32 px, by the pipeline's own ops;
  folder_h264   the same after an H.264 round trip (libx264, CRF 18), as the
                folder dataset stores them;
  folder_stride1  the folder path with frame_stride 1.
For each, the actor's displacement between the frames the layer compares
and the share of actor pixels whose flow points within 45 degrees of the
true motion (the evaluation's flow direction accuracy). A folder dataset has
no true flow, so its runs cannot report this; this script recomputes it
from the generator.
"""

import os
import tempfile

from absl import app
from absl import flags
import av
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from airstreams_jax.training import metrics
from airstreams_jax.data import synthetic_generator as generator
from airstreams_jax.data import video_ops
from airstreams_jax.models import rep_flow
from airstreams_jax.tools import video_files

_CLIPS = flags.DEFINE_integer('clips', 64, 'Clips per input path.')
_WORKDIRS = flags.DEFINE_list(
    'workdirs', [], 'Trained runs whose flow layer to measure too.')
PATHS = ('synthetic', 'folder', 'folder_h264', 'folder_stride1')


def _downscale2(x: np.ndarray) -> np.ndarray:
  """2x2 area average over the two axes after the leading one."""
  t, h, w = x.shape[:3]
  return x.reshape(t, h // 2, 2, w // 2, 2, *x.shape[3:]).mean(axis=(2, 4))


def _h264_round_trip(video: np.ndarray) -> np.ndarray:
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'clip.mp4')
    video_files.write_mp4(path, video, fps=8)
    with av.open(path) as container:
      return np.stack([f.to_ndarray(format='rgb24')
                       for f in container.decode(video=0)])


def model_input(clip, path: str):
  """Frames [T, 32, 32, 3] (float), actor flow [T-1, 32, 32, 2] in model
  pixels between compared frames, actor mask [T-1, 32, 32]; the folder
  paths through the evaluation pipeline's own ops (`video_ops`: the centre
  clip, the centre view of the stored 48-px frame resized to 32)."""
  video = clip['video'].astype(np.float32)
  flow = clip['flow'].astype(np.float32)
  actor = clip['masks'] == generator.label_category(clip['label'])
  if path == 'synthetic':
    return video[:8], flow[:7], actor[:7]
  stride = 1 if path == 'folder_stride1' else 2
  if path == 'folder_h264':
    video = _h264_round_trip(clip['video']).astype(np.float32)
  # Stored as the builder stores them: a 48-px short side (an area
  # average), uint8.
  stored = np.round(_downscale2(video)).astype(np.uint8)
  # The actor and the pan move uniformly: `stride` frames' displacement is
  # `stride` times one frame's; halved on the 48-px grid.
  step = _downscale2(flow * stride) / 2
  whole_actor = (_downscale2(actor.astype(np.float32)) == 1).astype(np.uint8)
  idx = video_ops.view_clip_indices(len(stored), 8, stride, 1)[0].numpy()
  box = video_ops.view_crop_boxes(tf.constant(stored.shape[1:3]), 1)[0]
  frames = video_ops.resize_video(tf.constant(stored[idx]), box, 32).numpy()
  pairs = idx[:-1]
  true_flow = video_ops.resize_flow(tf.constant(step[pairs]), box, 32).numpy()
  moving = video_ops.resize_masks(tf.constant(whole_actor[pairs]), box,
                                  32).numpy() == 1
  return frames.astype(np.float32), true_flow, moving


def direction_accuracy(path: str, num_clips: int, seed: int = 0,
                       flow_config=None, flow_params=None):
  """(direction accuracy, mean actor speed in px/step, scored pixels) of the
  flow layer (`flow_config`, default 10 iterations, at `flow_params`,
  default the initial TV-L1 values) on `path`'s frames."""
  rng = np.random.default_rng(seed)
  layer = rep_flow.RepresentationFlow(
      **dict(flow_config or dict(num_iter=10, bottleneck=1)))
  frames, flows, masks = [], [], []
  for i in range(num_clips):
    size, length = (32, 10) if path == 'synthetic' else (96, 16)
    clip = generator.generate_clip(rng, i % 6, length, size)
    f, u, m = model_input(clip, path)
    frames.append(f)
    flows.append(u)
    masks.append(m)
  x = jnp.asarray(np.stack(frames))
  params = ({'params': flow_params} if flow_params is not None
            else layer.init(jax.random.PRNGKey(0), x[:1]))
  learned = np.asarray(jax.jit(layer.apply)(params, x))[:, :-1]
  true_flow = np.stack(flows)
  moving = np.stack(masks)
  sums = metrics.flow_sums(jnp.asarray(learned[..., :2]),
                           jnp.asarray(true_flow), jnp.asarray(moving))
  pixels = float(sums['flow_pixels'])
  speed = np.abs(true_flow[moving]).max(axis=-1).mean()
  return float(sums['flow_direction_hits']) / pixels, speed, int(pixels)


def _trained_flow_layer(workdir: str):
  # Imported here: loading a run pulls in the whole training stack.
  from airstreams_jax.training import trained_run  # pylint: disable=g-import-not-at-top
  run = trained_run.TrainedRun.load(workdir)
  if 'flow_layer' not in run.variables['params']:
    raise SystemExit(f'error: {workdir} has no flow stream.')
  return run.config.model.flow, run.variables['params']['flow_layer']


def main(argv):
  del argv
  layers = [('untrained (TV-L1)', None, None)] + [
      (w, *_trained_flow_layer(w)) for w in _WORKDIRS.value]
  print(f'{"flow layer":40s} {"input path":16s} {"actor px/step":>13s} '
        f'{"direction acc.":>14s}')
  for name, flow_config, flow_params in layers:
    for path in PATHS:
      accuracy, speed, _ = direction_accuracy(
          path, _CLIPS.value, flow_config=flow_config,
          flow_params=flow_params)
      print(f'{name[-40:]:40s} {path:16s} {speed:13.2f} '
            f'{100 * accuracy:13.1f}%')


if __name__ == '__main__':
  app.run(main)
