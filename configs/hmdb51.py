r"""AIRStreams on HMDB51 (51 classes; one of the three official splits).

Run (the dataset is built with teacher masks on first use from your local
copy; `python -m airstreams_jax.data.hmdb51` style errors list the files
expected):
  python -m airstreams_jax.main --config=configs/hmdb51.py:split=1 \
      --workdir=workdirs/hmdb51_s1 \
      --config.dataset.manual_dir=/data/hmdb51 \
      --config.dataset.data_dir=/data/tfds
Ablations (paper Table 2), any combination:
  --config=configs/hmdb51.py:split=1,streams=rgb_flow,grad=stop
  --config=configs/hmdb51.py:split=1,weights=uniform
  --config=configs/hmdb51.py:split=1,weights=workdirs/evolve/best_weights.json
Tiny run on a small copy (e.g. the test suite's fake HMDB51):
  --config=configs/hmdb51.py:split=1,smoke
Report the mean top-1 over split=1,2,3.
"""

from configs import base


def get_config(arg=None):
  """Arguments: split (1-3), streams, grad, weights (see base), smoke."""
  arg = base.parse_arg(arg, split=1, smoke=False, **base.ABLATION_ARGS)
  if arg.split not in (1, 2, 3):
    raise ValueError(f'HMDB51 has splits 1, 2 and 3, got split={arg.split}.')
  config = base.real_dataset_config('hmdb51')
  config.dataset.builder_config = f'split{arg.split}'
  # 3,570 training clips: 10k steps of 32 is ~90 epochs.
  config.num_train_steps = 10_000
  config.eval_every_steps = 2_000
  config.checkpoint_every_steps = 1_000
  base.apply_ablation(config, arg)
  if arg.smoke:
    base.shrink_for_smoke(config)
  return config
