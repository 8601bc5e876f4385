"""Where the search looks: how weightings are drawn, mutated, and how the
config's own weighting joins them.

The scale of the weights. The loss is L = sum_i λ_i L_i and the optimiser
is Adam(W) by default, whose update m / sqrt(v) is unchanged when every
gradient is multiplied by one constant: multiplying all λ by c changes the
trajectory only through Adam's epsilon, gradient clipping (which rescales
large gradients before Adam) and weight decay's share, i.e. nearly not at
all. What a weighting means is its ratios (λ_interm / λ_merged, ...). So
the config's weighting (rgb 1, merged 1, interm 4 in configs/synthetic.py)
is brought into the search's range by one common factor, its largest
weight becoming the range's top, which keeps its ratios: (0.25, 0, 0,
0.25, 1) in [0, 1]. (With SGD the overall scale acts as a learning-rate
factor and would matter; the search does not model that.)

The draw. 'uniform' is the paper's U[low, high]. 'log_uniform' draws
log λ uniformly in [log low, log high], so every ratio between low/high and
high/low is as likely as its inverse: U[0, 1] makes λ_a / λ_b > 4 happen only
for about 1 pair in 8 and rarely proposes one weight an order of magnitude
under another, which is what the hand-set point is (interm 4, rgb 1).
A weight of exactly 0 cannot be drawn log-uniformly; the config's zeros are
kept as they are in its scaled point (0.001 of the top and 0 are nearly the
same loss term).
"""

import math
from typing import Optional, Sequence, Tuple

import numpy as np

DRAWS = ('uniform', 'log_uniform')


def draw(rng: np.random.Generator, kind: str, low: float, high: float,
         size: Optional[int] = None):
  """Weights from the draw `kind` over [low, high]: a float, or an array of
  `size`. For 'uniform' over [0, 1] the generator is used exactly as the
  paper's U[0, 1) draws were, so searches written before this option
  replay unchanged."""
  if kind == 'uniform':
    return rng.uniform(low, high, size)
  if kind == 'log_uniform':
    return np.exp(rng.uniform(math.log(low), math.log(high), size))
  raise ValueError(f'unknown draw {kind!r}; use one of {DRAWS}')


def mutate(weights: Sequence[float], rng: np.random.Generator,
           kind: str = 'uniform', low: float = 0.0, high: float = 1.0
           ) -> Tuple[Tuple[float, ...], int]:
  """Redraws one uniformly chosen weight: (weights, its index)."""
  index = int(rng.integers(len(weights)))
  child = list(weights)
  child[index] = float(draw(rng, kind, low, high))
  return tuple(child), index


def scaled_into_range(weights: Sequence[float],
                      high: float) -> Tuple[float, ...]:
  """The weighting times one factor that makes its largest weight `high`
  (its ratios kept; see the module docstring for why that is the same
  weighting under Adam).

  Raises:
    ValueError: no positive weight, or a negative or non-finite one.
  """
  w = np.asarray(weights, np.float64)
  if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
    raise ValueError(f'the weighting {tuple(weights)} cannot be scaled: it '
                     'needs finite weights >= 0, one of them > 0')
  return tuple(float(x) for x in w * (high / w.max()))
