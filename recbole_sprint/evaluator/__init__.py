"""recbole_sprint.evaluator
#########################

Popularity-bias, long-tail and spectral-collapse metrics inside RecBole's evaluator. Importing this package
(``import recbole_sprint`` does) registers them in RecBole's metric registry, so that any model, RecBole's
included, can list them in ``metrics: [...]`` next to ``Recall`` and ``NDCG``:

``ARP``, ``TailCoverage``, ``TailExposure``, ``TailRecall`` (options ``tail_ratio``, ``popularity_source``;
defaults in ``recbole_sprint/properties/overall.yaml``), ``SpectralCollapse``, ``InformationAbundance``,
``HistoryShare`` (repeat recommendations before ``eval_exclude_history`` masks them;
:mod:`recbole_sprint.evaluator.history`).
RecBole's ``AveragePopularity``, ``TailPercentage`` and ``GiniIndex`` are replaced by vectorised versions with
identical results. The data they need is gathered by :class:`SprintCollector`, which the plugin's trainers
install.
"""

from recbole_sprint.evaluator.collector import SprintCollector
from recbole_sprint.evaluator.factors import has_score_factors, score_factors
from recbole_sprint.evaluator.metrics import (
    ARP,
    AveragePopularity,
    GiniIndex,
    HistoryShare,
    InformationAbundance,
    SpectralCollapse,
    TailCoverage,
    TailExposure,
    TailPercentage,
    TailRecall,
)
from recbole_sprint.evaluator.register import register_metric

PLUGIN_METRICS = (ARP, TailCoverage, TailExposure, TailRecall, SpectralCollapse, InformationAbundance, HistoryShare)
VECTORISED_RECBOLE_METRICS = (AveragePopularity, TailPercentage, GiniIndex)

for _metric in PLUGIN_METRICS + VECTORISED_RECBOLE_METRICS:
    register_metric(_metric)

__all__ = [
    "SprintCollector",
    "register_metric",
    "score_factors",
    "has_score_factors",
    "PLUGIN_METRICS",
    "VECTORISED_RECBOLE_METRICS",
] + [m.__name__ for m in PLUGIN_METRICS]
