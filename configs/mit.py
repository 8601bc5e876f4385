r"""AIRStreams on Moments in Time (339 classes, 3-second clips).

Run (the dataset is built with teacher masks on first use from your local
copy of Moments_in_Time_Raw):
  python -m airstreams_jax.main --config=configs/mit.py \
      --workdir=workdirs/mit \
      --config.dataset.manual_dir=/data/Moments_in_Time_Raw \
      --config.dataset.data_dir=/data/tfds
Ablations: `configs/mit.py:streams=rgb_flow` (the paper's 33.53 baseline),
`grad=stop`, `weights=uniform` or `weights=<evolved weights JSON>`.
Tiny run: `configs/mit.py:smoke`. Charades then starts from this workdir
(configs/charades.py).

Reported: top-1 and top-5 on the validation set.
"""

from configs import base


def get_config(arg=None):
  """Arguments: streams, grad, weights (see base), smoke."""
  arg = base.parse_arg(arg, smoke=False, **base.ABLATION_ARGS)
  config = base.real_dataset_config('moments_in_time')
  config.dataset.eval_split = 'validation'
  # ~802k clips: 200k steps of 256 is ~64 epochs (a pod-sized batch).
  config.batch_size = 256
  config.num_train_steps = 200_000
  config.optimizer.warmup_steps = 2_000
  config.eval_every_steps = 20_000
  config.checkpoint_every_steps = 2_000
  config.keep_checkpoints = 3
  config.dataset.shuffle_buffer = 4096
  # 3-second clips: 3 clips x 3 crops cover them.
  config.dataset.eval_clips = 3
  base.apply_ablation(config, arg)
  if arg.smoke:
    base.shrink_for_smoke(config)
  return config
