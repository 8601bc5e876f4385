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
`selfie` (people; fetched once from PyPI), `pose` or `rvm` (see
docs/real_video.md), `tflite` (your segmentation model:
--config.dataset.teacher_options.model_path=... .labels_path=...) or `files`
(masks you computed: <stem>.masks.npz beside each video, ROOT/classes.txt).
How frames are stored: --config.dataset.short_side (pixels), .fps (frames
kept per second of video; 0: every frame), .max_frames (0: all) and
.mask_size. Bad videos are skipped and listed in
D/video_folder/<config>/1.0.0/bad_inputs.json. Build ahead of training with
the same defaults (this file is their one source):
  python -m airstreams_jax.data.build --config=configs/video_folder.py \
      --config.dataset.manual_dir=ROOT --config.dataset.data_dir=D

Why fps = 15 by default: a clip is num_frames = 8 stored frames, one in
frame_stride = 2, so at 15 stored frames/s it spans 14/15 s of video (one
action's worth; flow pairs 2/15 s apart) whatever the source's rate, 24, 25
or 30 fps alike; with fps = 0 it spanned 0.47 s of a 30-fps video and 0.58 s
of a 24-fps one. 15 halves a 30-fps source exactly, halves what is decoded, stored and
masked by the teacher, and stays under the usual 24-30 fps so no frame is
made up. Sources slower than 15 fps (some web clips are 5 fps) keep every
frame at their own rate, and their clips span longer (2.8 s at 5 fps):
repeating frames to reach 15 fps would give the flow layer pairs with no
motion. predict and export decode at the run's fps, so a video is judged on
the frame rate the model was trained on. --config.dataset.fps=0 keeps every
frame (the behaviour before).

The flow layer runs coarse to fine: 3 levels at scale step 0.5, 1 warp
each (model.flow.pyramid_levels, .scale_step, .warps; models/flow_pyramid.py),
because real video moves by more than the pixel the paper's single
linearisation sees. Trained on the UCF101 3-class clips for 300 steps it
trained as well as the single scale (docs/real_video.md: the same test
top-1 and segmentation, its learned flow nearer OpenCV's TV-L1) for a train
step 1.12x as long. The paper's single-scale layer:
  --config.model.flow.pyramid_levels=1 --config.model.flow.warps=1
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
  config.dataset.fps = 15.0  # See the docstring: one clip, about 1 s.
  # Coarse to fine (see the docstring); OpenCV's default step is 0.8, but 0.5
  # reaches as far with fewer levels: 64 -> 32 -> 16 px.
  config.model.flow.update(pyramid_levels=3, scale_step=0.5, warps=1)
  config.dataset.short_side = 96
  config.dataset.mask_size = 48

  if arg.smoke:
    base.shrink_for_smoke(config)
    config.dataset.short_side = 40
    config.dataset.mask_size = 20
  return config
