"""Optimiser and learning-rate schedule from `config.optimizer`."""

import optax


def make_schedule(opt_config, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up, then cosine decay to 0 or a constant rate."""
  warmup = min(opt_config.warmup_steps, max(num_train_steps - 1, 0))
  if opt_config.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, opt_config.learning_rate, warmup_steps=warmup,
        decay_steps=max(num_train_steps, warmup + 1))
  if opt_config.schedule == 'constant':
    return optax.join_schedules(
        [optax.linear_schedule(0.0, opt_config.learning_rate, warmup),
         optax.constant_schedule(opt_config.learning_rate)], [warmup])
  raise ValueError(f'Unknown schedule {opt_config.schedule!r}; use '
                   "'cosine' or 'constant'.")


def make_optimizer(opt_config, num_train_steps: int
                   ) -> optax.GradientTransformation:
  """The optax transformation: optional clipping, then AdamW or SGD."""
  schedule = make_schedule(opt_config, num_train_steps)
  if opt_config.name == 'adamw':
    opt = optax.adamw(schedule, weight_decay=opt_config.weight_decay)
  elif opt_config.name == 'sgd':
    opt = optax.chain(optax.add_decayed_weights(opt_config.weight_decay),
                      optax.sgd(schedule, momentum=opt_config.momentum))
  else:
    raise ValueError(f"Unknown optimizer {opt_config.name!r}; use 'adamw' or "
                     "'sgd'.")
  if opt_config.grad_clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(opt_config.grad_clip_norm), opt)
  return opt
