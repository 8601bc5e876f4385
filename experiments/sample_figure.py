r"""What a trained run's flow layer and segmentation net produce, as a PNG.

  python -m experiments.sample_figure --workdir=workdirs/synthetic \
      --out=workdirs/synthetic/samples.png [--num_clips=3] [--scale=4]

Takes the first clips of the run's evaluation split (first view) and draws,
per clip, one row each of: the frames, the true flow (where the data knows
it), the learned flow (colour wheel: hue = direction, right red, down
yellow-green, left cyan, up violet; saturation = speed, white = still), the
learned segmentation (argmax of the logits), the teacher's masks and the true
masks (where known). Time runs left to right.
"""

import functools
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from PIL import ImageDraw

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.visualize import images
from airstreams_jax.data import builders
from airstreams_jax.data import pipeline
from airstreams_jax.models import airstreams
from airstreams_jax.models import rep_flow
from airstreams_jax.training import checkpointing
from airstreams_jax.training import train

_WORKDIR = flags.DEFINE_string('workdir', None, "A training run's workdir.")
_OUT = flags.DEFINE_string('out', None, 'The PNG file to write.')
_NUM_CLIPS = flags.DEFINE_integer('num_clips', 3, 'Evaluation clips drawn.',
                                  lower_bound=1)
_SCALE = flags.DEFINE_integer('scale', 4, 'Pixels per input pixel.',
                              lower_bound=1)
_LABEL_WIDTH = 110


def representations(workdir: str, num_clips: int):
  """The first eval clips (view 0), their targets and the model's outputs."""
  config, classes = train.load_run(workdir)
  builder = builders.make_builder(config.dataset)
  builders.prepare(builder)
  ds, _ = pipeline.make_eval_dataset(builder, config.dataset,
                                     local_batch_size=num_clips)
  batch = next(iter(ds.take(1).as_numpy_iterator()))
  view = {k: v[:, 0] for k, v in batch.items()
          if k in ('video', 'masks', 'true_masks', 'true_flow')}
  model = airstreams.build_model(
      config.model, num_classes=classes['num_classes'],
      num_seg_classes=len(classes['mask_class_names']))
  mesh = mesh_lib.make_mesh((('data', -1),))
  _, variables = checkpointing.restore_variables(workdir,
                                                 mesh_lib.replicated(mesh))
  apply = jax.jit(functools.partial(model.apply, train=False,
                                    stream_heads=False))
  outputs = apply(variables, jnp.asarray(view['video']))
  return view, jax.tree.map(np.asarray, outputs), batch['label']


def figure(view, outputs, scale: int) -> Image.Image:
  """One block of labelled rows per clip."""
  rows = []
  for i, video in enumerate(view['video']):
    clip = {'frames': video}
    if 'true_flow' in view:
      true_flow = view['true_flow'][i]
      speed = np.abs(true_flow).max() or 1.0
      clip['true flow'] = images.flow_to_rgb(true_flow, speed)
    if 'flow' in outputs:
      clip['learned flow'] = images.flow_to_rgb(
          rep_flow.mean_flow(outputs['flow'][i]))
    if 'seg_logits' in outputs:
      clip['learned seg'] = images.segmentation_to_rgb(
          outputs['seg_logits'][i].argmax(-1))
    clip['teacher'] = images.segmentation_to_rgb(view['masks'][i])
    if 'true_masks' in view:
      clip['true masks'] = images.segmentation_to_rgb(
          view['true_masks'][i])
    rows.extend(clip.items())
  height = video.shape[1] * scale
  width = video.shape[0] * video.shape[2] * scale
  image = Image.new('RGB', (_LABEL_WIDTH + width, height * len(rows)),
                    'white')
  draw = ImageDraw.Draw(image)
  for r, (name, frames) in enumerate(rows):
    strip = np.concatenate(list(frames), axis=1)
    strip = np.kron(strip, np.ones((scale, scale, 1), np.uint8))
    image.paste(Image.fromarray(strip), (_LABEL_WIDTH, r * height))
    draw.text((6, r * height + height // 2 - 6), name, fill='black')
  return image


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    view, outputs, _ = representations(_WORKDIR.value, _NUM_CLIPS.value)
  except errors.ConfigError as e:
    sys.exit(f'error: {cli.one_line(e)}')
  figure(view, outputs, _SCALE.value).save(_OUT.value)
  print(f'Wrote {_OUT.value}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir', 'out'])
  app.run(main)
