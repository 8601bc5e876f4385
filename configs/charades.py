r"""AIRStreams on Charades v1 (157 classes, multi-label; mAP).

Run from scratch (the dataset is built with teacher masks on first use from
your local copy of Charades_v1_480 and the Charades_v1 CSV files):
  python -m airstreams_jax.main --config=configs/charades.py \
      --workdir=workdirs/charades \
      --config.dataset.manual_dir=/data/charades \
      --config.dataset.data_dir=/data/tfds
Initialised from a Moments in Time run, as in the paper (its heads are
re-initialised: 339 -> 157 classes):
  --config=configs/charades.py:init=workdirs/mit
Ablations: `:streams=...,grad=...,weights=...` as in configs/hmdb51.py.
Tiny run: `configs/charades.py:smoke`.

Sigmoid cross-entropy; clip labels are the actions whose intervals cover the
clip; test scores are max-pooled over the views of a video, and mAP follows
Charades_v1_classify (references.md section 6).
"""

from configs import base


def get_config(arg=None):
  """Arguments: init (a workdir to start from), streams, grad, weights,
  smoke."""
  arg = base.parse_arg(arg, init='', smoke=False, **base.ABLATION_ARGS)
  config = base.real_dataset_config('charades')
  config.model.multi_label = True
  config.init_from = arg.init
  # 7,985 training videos of ~30 s: 20k steps of 32 clips.
  config.num_train_steps = 20_000
  config.eval_every_steps = 4_000
  config.checkpoint_every_steps = 1_000
  config.best_metric = 'mAP'
  # Long videos: clips span 8 frames x stride 4 of the stored frames.
  config.dataset.frame_stride = 4
  base.apply_ablation(config, arg)
  if arg.smoke:
    base.shrink_for_smoke(config)
  return config
