"""Statistics for benchmark tables: mean and standard deviation over seeds, relative gain of a model over its
backbone, and a paired significance test across seeds.

RecBole 1.2.1 ships no significance test; the paired Student t-test here is :func:`scipy.stats.ttest_rel` on
the per-seed values of two models that were trained with the same seeds.
"""

import math

import numpy as np
from scipy import stats as scipy_stats


def mean_std(values):
    """``(mean, std)`` of ``values``; std is the sample standard deviation (ddof = 1), 0.0 for one value."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_std needs at least one value")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std


def relative_gain(model_mean, backbone_mean, smaller_is_better=False, absolute=False):
    """Gain of a model over its backbone, positive when the model is better.

    Args:
        model_mean, backbone_mean: the two means.
        smaller_is_better: the metric improves downwards (ARP, AveragePopularity, ...): the sign is flipped.
        absolute: report the absolute difference in percentage points (the paper's convention for Fair
            metrics: ``100 * (model - backbone)``) instead of the relative gain
            ``100 * (model - backbone) / |backbone|``.

    Returns:
        The gain in percent (or percentage points); ``nan`` for a relative gain over a zero backbone.
    """
    diff = model_mean - backbone_mean
    if smaller_is_better:
        diff = -diff
    if absolute:
        return 100.0 * diff
    if backbone_mean == 0:
        return math.nan
    return 100.0 * diff / abs(backbone_mean)


def paired_test(model_by_seed, backbone_by_seed):
    """Paired t-test of two models over the seeds both were run with.

    Args:
        model_by_seed, backbone_by_seed: dicts ``seed -> metric value``.

    Returns:
        dict ``t``, ``p_value`` (two-sided), ``n`` (number of seed pairs). ``t`` and ``p_value`` are ``nan``
        with fewer than two pairs or when every paired difference is the same (zero variance).
    """
    seeds = sorted(set(model_by_seed) & set(backbone_by_seed))
    a = np.array([model_by_seed[s] for s in seeds], dtype=float)
    b = np.array([backbone_by_seed[s] for s in seeds], dtype=float)
    if len(seeds) < 2 or np.allclose(a - b, (a - b)[0], rtol=0, atol=0):
        return {"t": math.nan, "p_value": math.nan, "n": len(seeds)}
    result = scipy_stats.ttest_rel(a, b)
    return {"t": float(result.statistic), "p_value": float(result.pvalue), "n": len(seeds)}
