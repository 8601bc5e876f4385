r"""AIRStreams on your own labelled videos: ROOT/<split>/<class>/<video>.

Run (the dataset, with teacher masks, is built on first use into D):
  python -m airstreams_jax.main --config=configs/video_folder.py \
      --workdir=W --config.dataset.manual_dir=ROOT \
      --config.dataset.data_dir=D --config.dataset.teacher=selfie
Tiny run (a few training steps on small stored frames):
  python -m airstreams_jax.main --config=configs/video_folder.py:smoke \
      --workdir=W --config.dataset.manual_dir=ROOT \
      --config.dataset.data_dir=D --config.dataset.teacher=selfie

ROOT holds one folder per split (train/ and test/; the split names are the
folder names, see --config.dataset.train_split/eval_split) with one folder per
class inside, videos .mp4, .avi, .mkv, .webm or .mov. The teacher can be
`selfie` (people; fetched once from PyPI), `tflite` (your segmentation model:
--config.dataset.teacher_options.model_path=... .labels_path=...) or `files`
(masks you computed: <stem>.masks.npz beside each video, ROOT/classes.txt).
How frames are stored: --config.dataset.short_side (pixels), .fps (0: every
frame), .max_frames (0: all) and .mask_size; long videos read faster with
e.g. --config.dataset.fps=10. Bad videos are skipped and listed in
D/video_folder/<config>/1.0.0/bad_inputs.json.
"""

from configs import base


def get_config(arg=None):
  """Config argument: 'smoke' for a tiny, fast run."""
  arg = base.parse_arg(arg, smoke=False)
  config = base.get_config()
  config.num_train_steps = 600
  config.batch_size = 16
  config.eval_batch_size = 16
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 300
  base.use_small_cpu_model(config)

  config.dataset.name = 'video_folder'
  config.dataset.teacher = 'selfie'
  config.dataset.train_split = 'train'
  config.dataset.eval_split = 'test'
  config.dataset.image_size = 64
  config.dataset.num_frames = 8
  config.dataset.frame_stride = 2
  config.dataset.short_side = 96
  config.dataset.mask_size = 48

  if arg.smoke:
    base.shrink_for_smoke(config)
    config.dataset.short_side = 40
    config.dataset.mask_size = 20
  return config
