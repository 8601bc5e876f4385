r"""AIRStreams on the embedded synthetic dataset (generated on the machine).

Run:
  python -m airstreams_jax.main --config=configs/synthetic.py \
      --workdir=workdirs/synthetic
Tiny run (about a minute on 2 CPU cores):
  python -m airstreams_jax.main --config=configs/synthetic.py:smoke \
      --workdir=workdirs/synthetic_smoke

The label is which object category moves and in which direction, while
objects of the other categories stand still as distractors: appearance alone
is ambiguous, so motion and object identity both matter.

`:distractors=N` (0, 1 or 2, the default) keeps N still objects beside the
actor: with 0 the actor is alone and its shape tells its category, a task
where appearance alone is informative (a different dataset version, built
on first use):
  python -m airstreams_jax.main --config=configs/synthetic.py:distractors=0 \
      --workdir=workdirs/synthetic_d0
"""

from configs import base

def get_config(arg=None):
  """Config argument: 'smoke' for a tiny, fast run; 'distractors=N' for
  N in [0, 2] still objects beside the moving one (2)."""
  arg = base.parse_arg(arg, smoke=False, distractors=2)
  config = base.get_config()
  # About 5 minutes of training on 2 CPU cores (0.5 s per step).
  config.num_train_steps = 600
  config.batch_size = 16
  config.eval_batch_size = 32
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 300
  base.use_small_cpu_model(config)

  config.dataset.name = 'synthetic_actions'
  config.dataset.image_size = 32
  config.dataset.num_frames = 8
  # Flipping would swap the classes "moves left" and "moves right".
  config.dataset.random_flip = False
  config.dataset.synthetic = dict(
      num_classes=6, num_frames=10, image_size=32, num_train=2048,
      num_test=256, seed=0, num_distractors=arg.distractors,
      # The oracle teacher imitating a real one's mistakes: drop whole
      # objects from a clip's masks with this probability, erode shapes.
      oracle_drop_prob=0.0, oracle_erode_px=0, oracle_seed=0)

  if arg.smoke:
    base.shrink_for_smoke(config)
    config.dataset.synthetic.update(dict(num_frames=4, num_train=32,
                                         num_test=16))
    config.evolution.update(dict(population_size=4, tournament_size=2,
                                 num_evaluations=8, parallel=2,
                                 proxy_steps=4, confirm_seeds=2,
                                 confirm_top=1))
  return config
