"""The proxy-fidelity statistics against scipy's."""

import numpy as np
import pytest
from scipy import stats

from airstreams_jax.evolution import fidelity_stats


@pytest.mark.parametrize('seed', range(5))
def test_spearman_equals_scipy_with_and_without_ties(seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=12)
  y = x + rng.normal(size=12)
  assert fidelity_stats.spearman(x, y) == pytest.approx(
      stats.spearmanr(x, y).statistic, abs=1e-12)
  # Ties (accuracies on a small holdout repeat often).
  xt, yt = np.round(x), np.round(y * 2) / 2
  assert fidelity_stats.spearman(xt, yt) == pytest.approx(
      stats.spearmanr(xt, yt).statistic, abs=1e-12)
  np.testing.assert_array_equal(fidelity_stats.ranks(xt),
                                stats.rankdata(xt))
  assert np.isnan(fidelity_stats.spearman([1, 1, 1], [1, 2, 3]))


def test_bootstrap_interval_equals_scipys_percentile_bootstrap():
  rng = np.random.default_rng(0)
  proxy = rng.normal(size=10)
  full = 0.6 * proxy + rng.normal(size=10)
  ours = fidelity_stats.bootstrap_interval(proxy, full, n_resamples=2000,
                                           seed=3)
  theirs = stats.bootstrap(
      (proxy, full), lambda a, b: stats.spearmanr(a, b).statistic,
      paired=True, vectorized=False, n_resamples=2000, method='percentile',
      confidence_level=0.95, rng=np.random.default_rng(3))
  np.testing.assert_allclose(ours, tuple(theirs.confidence_interval),
                             rtol=1e-12)
  rho = fidelity_stats.spearman(proxy, full)
  assert ours[0] < rho < ours[1]
  # Other statistics and levels go through the same resamples.
  narrower = fidelity_stats.bootstrap_interval(proxy, full, level=0.5,
                                               n_resamples=2000, seed=3)
  assert ours[0] < narrower[0] < narrower[1] < ours[1]


def test_variance_components_match_the_anova_and_recover_known_ones():
  rng = np.random.default_rng(1)
  true_means = rng.normal(0.0, 2.0, size=(200, 1))  # Between variance 4.
  scores = true_means + rng.normal(0.0, 1.0, size=(200, 3))  # Within 1.
  c = fidelity_stats.variance_components(scores)
  assert c.f_statistic == pytest.approx(
      stats.f_oneway(*scores).statistic, rel=1e-10)
  assert c.within == pytest.approx(1.0, rel=0.1)
  assert c.between == pytest.approx(4.0, rel=0.2)
  assert c.snr == pytest.approx(c.between / c.within)
  assert c.reliability == pytest.approx(4 / (4 + 1 / 3), abs=0.03)
  # Pure noise: no signal (clipped at 0), reliability 0.
  noise = fidelity_stats.variance_components(rng.normal(size=(50, 4)))
  assert noise.between < 0.1 and noise.reliability < 0.3
  with pytest.raises(ValueError, match=r'\[K >= 2 weightings, R >= 2'):
    fidelity_stats.variance_components(np.ones((5, 1)))


def test_paired_difference_and_its_error_match_the_paired_t_test():
  rng = np.random.default_rng(2)
  seed_luck = rng.normal(0.0, 5.0, size=6)  # Shared by both, per seed.
  evolved = 70 + seed_luck + rng.normal(0.0, 1.0, size=6) + 1.0
  fixed = 70 + seed_luck + rng.normal(0.0, 1.0, size=6)
  d = fidelity_stats.paired_difference(evolved, fixed)
  assert d.n == 6
  assert d.mean == pytest.approx(np.mean(evolved - fixed))
  assert d.mean / d.se == pytest.approx(
      stats.ttest_rel(evolved, fixed).statistic, rel=1e-10)
  # Pairing removes the seeds' luck: the unpaired error is much larger.
  unpaired = np.sqrt(evolved.var(ddof=1) / 6 + fixed.var(ddof=1) / 6)
  assert d.se < 0.5 * unpaired
  with pytest.raises(ValueError, match='one value per seed'):
    fidelity_stats.paired_difference([1.0, 2.0], [1.0])
