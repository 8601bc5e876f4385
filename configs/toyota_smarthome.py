r"""AIRStreams on Toyota Smarthome, cross-subject protocol (31 classes).

Run (the dataset is built with teacher masks on first use from your local
copy, the `mp4/` folder of the trimmed clips):
  python -m airstreams_jax.main --config=configs/toyota_smarthome.py \
      --workdir=workdirs/toyota_cs \
      --config.dataset.manual_dir=/data/toyota_smarthome \
      --config.dataset.data_dir=/data/tfds
Ablations: `:streams=...,grad=...,weights=...` as in configs/hmdb51.py.
Tiny run: `configs/toyota_smarthome.py:smoke`.

Reported: accuracy and mean per-class accuracy (the protocol's metric, the
classes being very unbalanced).
"""

from configs import base


def get_config(arg=None):
  """Arguments: streams, grad, weights (see base), smoke."""
  arg = base.parse_arg(arg, smoke=False, **base.ABLATION_ARGS)
  config = base.real_dataset_config('toyota_smarthome')
  config.dataset.builder_config = 'cross_subject'
  # ~11k training clips: 15k steps of 64 is ~85 epochs.
  config.batch_size = 64
  config.num_train_steps = 15_000
  config.eval_every_steps = 3_000
  config.checkpoint_every_steps = 1_000
  base.apply_ablation(config, arg)
  if arg.smoke:
    base.shrink_for_smoke(config)
  return config
