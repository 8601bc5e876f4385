"""experiments/flow_at_input_scale.py: the frames and true motion per path."""

import numpy as np
import pytest

from airstreams_jax.data import synthetic_generator as generator
from experiments import flow_at_input_scale


@pytest.mark.parametrize('path, size, length, step', [
    ('synthetic', 32, 10, 1.0),
    # 3 px a frame at 96 px, two frames per step, halved by the stored
    # 48-px frames, times 31/47 by the evaluation's 48 -> 32 resize (which
    # maps pixel centres end to end).
    ('folder', 96, 16, 3.0 * 31 / 47),
    ('folder_stride1', 96, 16, 1.5 * 31 / 47),
])
def test_actor_displacement_between_compared_frames(path, size, length, step):
  clip = generator.generate_clip(np.random.default_rng(3), 1, length, size)
  frames, flow, moving = flow_at_input_scale.model_input(clip, path)
  assert frames.shape == (8, 32, 32, 3)
  assert flow.shape == (7, 32, 32, 2) and moving.shape == (7, 32, 32)
  assert moving.any()
  # Label 1 (ball_right) moves its actor right: u1 (along the width) is step on
  # every pixel wholly inside the actor, u2 is 0.
  np.testing.assert_allclose(flow[moving][:, 0], step, rtol=1e-5)
  np.testing.assert_allclose(flow[moving][:, 1], 0, atol=1e-6)


def test_untrained_layer_follows_one_pixel_steps_better_than_three():
  slow, slow_speed, _ = flow_at_input_scale.direction_accuracy('synthetic', 8)
  fast, fast_speed, _ = flow_at_input_scale.direction_accuracy('folder', 8)
  assert slow_speed < 1.5 < fast_speed
  assert slow > 0.85 and fast < slow - 0.2
