r"""recbole_sprint.evaluator.metrics
################################

Popularity-bias, long-tail and spectral-collapse metrics for RecBole's evaluator, plus faster drop-in versions
of RecBole's ``AveragePopularity``, ``TailPercentage`` and ``GiniIndex`` (identical results).

Notation: :math:`U` evaluated users, :math:`L_u` the top-:math:`K` list of user :math:`u`, :math:`\phi(i)` the
popularity of item :math:`i` (``popularity_source``), :math:`T` the tail set (bottom ``tail_ratio`` share of
the non-padding items by popularity, ties by item id; :mod:`recbole_sprint.evaluator.popularity`).

================================  =========================================================================
metric (``metrics: [...]``)       definition
================================  =========================================================================
``ARP@K`` (smaller is better)     :math:`\frac{1}{|U|}\sum_u \frac{1}{K}\sum_{i\in L_u}\phi(i)`
``TailCoverage@K``                :math:`|(\cup_u L_u)\cap T| / |T|`
``TailExposure@K``                :math:`\sum_u |L_u\cap T| / (|U| K)` (the SPRINT paper's Fair-alpha@K)
``TailRecall@K``                  :math:`\frac{1}{|U_T|}\sum_{u\in U_T} |L_u\cap P_u\cap T| / |P_u\cap T|`,
                                  :math:`P_u` the held-out items of :math:`u`, :math:`U_T` the users with at
                                  least one held-out tail item (users without one are left out of the mean;
                                  if no user has one the value is ``nan``: undefined, not 0)
``SpectralCollapse``              :math:`\sigma_1^2/\sum_k\sigma_k^2` of :math:`\hat Y = XE^\top` (evaluated
  (smaller is better)             users' final states :math:`X`, non-padding item matrix :math:`E`), from
                                  thin QR factors; 1 = rank-one score matrix
``InformationAbundance``          :math:`\sum_k\sigma_k/\sigma_1` of the non-padding item-embedding matrix
                                  (Guo et al., ICML 2024, "On the Embedding Collapse when Scaling up
                                  Recommendation Models")
``HistoryShare@K``                :math:`\frac{1}{|U|}\sum_u |L^{raw}_u \cap H_u| / K`: share of the top-K
  (smaller is better)             slots of the ranking *as scored* (before ``eval_exclude_history`` masks
                                  anything) that hold an item of the user's own history :math:`H_u`
                                  (:mod:`recbole_sprint.evaluator.history`) other than the evaluated target
                                  (the slots masking would empty); a diagnostic of repeat recommendations
================================  =========================================================================

The pure functions below take torch tensors on any device and return tensors on that device; the metric
classes (which RecBole's ``Evaluator`` calls on the collector's CPU tensors) only convert the final values.
"""

import numpy as np
import recbole.evaluator.metrics as recbole_metrics
import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_sprint.evaluator.factors import has_score_factors
from recbole_sprint.evaluator.popularity import check_popularity_source, check_tail_ratio, tail_mask

__all__ = [
    "average_recommendation_popularity",
    "tail_coverage",
    "tail_exposure",
    "tail_recall",
    "score_singular_values",
    "spectral_collapse",
    "information_abundance",
    "ARP",
    "TailCoverage",
    "TailExposure",
    "TailRecall",
    "SpectralCollapse",
    "InformationAbundance",
    "HistoryShare",
    "AveragePopularity",
    "TailPercentage",
    "GiniIndex",
]


# Pure functions -------------------------------------------------------------------------------------
def _rank_positions(topk, device):
    """[len(topk)] LongTensor of the 0-based columns K-1 of each requested cut-off."""
    return torch.tensor([k - 1 for k in topk], dtype=torch.long, device=device)


def average_recommendation_popularity(items, popularity, topk):
    """ARP@K for every K in ``topk``: [len(topk)] float64.

    Args:
        items: [U, max_k] recommended item ids, best first.
        popularity: [num_items] interaction counts.
    """
    pop = popularity[items].double()  # [U, max_k]
    ranks = torch.arange(1, items.shape[1] + 1, dtype=torch.float64, device=items.device)  # [max_k]
    per_user = pop.cumsum(dim=1) / ranks  # [U, max_k] mean popularity of the first k items
    return per_user.mean(dim=0)[_rank_positions(topk, items.device)]


def tail_exposure(items, tail, topk):
    """TailExposure@K (Fair-alpha@K): share of all top-K slots holding a tail item. [len(topk)] float64.

    Args:
        items: [U, max_k] recommended item ids.
        tail: [num_items] bool tail mask.
    """
    in_tail = tail[items].double()  # [U, max_k]
    ranks = torch.arange(1, items.shape[1] + 1, dtype=torch.float64, device=items.device)
    per_user = in_tail.cumsum(dim=1) / ranks  # [U, max_k]
    return per_user.mean(dim=0)[_rank_positions(topk, items.device)]


def tail_coverage(items, tail, topk):
    """TailCoverage@K: share of the tail items recommended to at least one user. [len(topk)] float64."""
    n_tail = tail.sum().double()
    values = []
    for k in topk:
        recommended = torch.zeros_like(tail)  # [num_items] bool
        recommended[items[:, :k].flatten()] = True
        values.append((recommended & tail).sum().double() / n_tail)
    return torch.stack(values)


def tail_recall(items, positives, tail, topk):
    """TailRecall@K: recall over held-out tail items, averaged over users that have one. [len(topk)] float64.

    Args:
        items: [U, max_k] recommended item ids (row u = user u of the evaluation).
        positives: [P, 2] (row, item id) of every held-out item (duplicates are counted once).
        tail: [num_items] bool tail mask.

    Returns:
        ``nan`` for every K if no user has a held-out tail item.
    """
    n_users, max_k = items.shape
    positives = positives[tail[positives[:, 1]]]  # [P_T, 2] tail positives only
    pair_ids = torch.unique(positives[:, 0] * tail.numel() + positives[:, 1])  # [P_T'] duplicates removed
    rows, targets = pair_ids // tail.numel(), pair_ids % tail.numel()
    n_tail_positives = torch.zeros(n_users, dtype=torch.float64, device=items.device)
    n_tail_positives.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float64))  # [U]
    found_by_rank = (items[rows] == targets[:, None]).double().cumsum(dim=1)  # [P_T, max_k] 1 once found
    hits = torch.zeros(n_users, max_k, dtype=torch.float64, device=items.device)
    hits.index_add_(0, rows, found_by_rank)  # [U, max_k] tail hits within the first k
    users = n_tail_positives > 0  # [U]
    per_user = hits[users] / n_tail_positives[users, None]  # [U_T, max_k]
    if per_user.shape[0] == 0:
        return torch.full((len(topk),), float("nan"), dtype=torch.float64, device=items.device)
    return per_user.mean(dim=0)[_rank_positions(topk, items.device)]


def score_singular_values(user_states, item_matrix):
    """Singular values of Y = X E^T without forming Y ([U, I]), descending, float64.

    With thin QR factorisations X = Q_x R_x and E = Q_e R_e (Q with orthonormal columns), Y = Q_x (R_x R_e^T)
    Q_e^T has the singular values of the small matrix R_x R_e^T ([min(U, d), min(I, d)]).

    Args:
        user_states: X [U, d].
        item_matrix: E [I, d].
    """
    r_users = torch.linalg.qr(user_states.double(), mode="r").R  # [min(U, d), d]
    r_items = torch.linalg.qr(item_matrix.double(), mode="r").R  # [min(I, d), d]
    return torch.linalg.svdvals(r_users @ r_items.T)


def spectral_collapse(user_states, item_matrix, item_bias=None):
    """sigma_1^2 / sum_k sigma_k^2 of Y = X E^T (+ 1 b^T if ``item_bias`` [I] is given); float64 scalar.

    A bias is folded into the factors: Y = [X, 1] [E, b]^T. ``nan`` if Y = 0.
    """
    if item_bias is not None:
        ones = torch.ones(user_states.shape[0], 1, dtype=user_states.dtype, device=user_states.device)
        user_states = torch.cat([user_states, ones], dim=1)  # [U, d + 1]
        item_matrix = torch.cat([item_matrix, item_bias[:, None].to(item_matrix.dtype)], dim=1)  # [I, d + 1]
    sigma = score_singular_values(user_states, item_matrix)
    energy = sigma.square()
    return energy[0] / energy.sum()


def information_abundance(item_matrix):
    """sum_k sigma_k / sigma_1 of the item-embedding matrix E [I, d] (Guo et al., ICML 2024); float64 scalar."""
    sigma = torch.linalg.svdvals(item_matrix.double())
    return sigma.sum() / sigma[0]


# Metric classes -------------------------------------------------------------------------------------
def _topk_list(config):
    topk = config["topk"]
    return [topk] if isinstance(topk, int) else list(topk)


def _require(dataobject, key, metric, hint):
    if key not in dataobject:
        raise KeyError(f"{metric} needs '{key}', which the evaluation collector did not provide: {hint}")
    return dataobject.get(key)


_COLLECTOR_HINT = (
    "evaluate with a recbole_sprint trainer (its SprintCollector computes it in data_collect(train_data), which "
    "trainer.fit runs; call trainer.eval_collector.data_collect(train_data) yourself before a bare evaluate)"
)


class _PopularityMetric(AbstractMetric):
    """Base of the top-K popularity metrics: validated options and the shared inputs."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", "data.item_popularity"]
    name = None

    def __init__(self, config):
        super().__init__(config)
        self.topk = _topk_list(config)
        self.popularity_source = check_popularity_source(config["popularity_source"])
        self.tail_ratio = check_tail_ratio(config["tail_ratio"])

    def inputs(self, dataobject):
        items = dataobject.get("rec.items")  # [U, max_k]
        popularity = _require(dataobject, "data.item_popularity", type(self).__name__, _COLLECTOR_HINT)
        return items, popularity

    def result(self, values):
        return {
            f"{self.name}@{k}": round(float(value), self.decimal_place) for k, value in zip(self.topk, values.tolist())
        }


class ARP(_PopularityMetric):
    r"""Average Recommendation Popularity (Yin et al. 2012; Abdollahpouri et al. 2019):
    :math:`\frac{1}{|U|}\sum_u \frac{1}{K}\sum_{i\in L_u}\phi(i)`; smaller = less popularity-biased."""

    smaller = True
    name = "arp"

    def calculate_metric(self, dataobject):
        items, popularity = self.inputs(dataobject)
        return self.result(average_recommendation_popularity(items, popularity, self.topk))


class TailCoverage(_PopularityMetric):
    r"""Long-tail coverage: :math:`|(\cup_u L_u)\cap T| / |T|`."""

    name = "tailcoverage"

    def calculate_metric(self, dataobject):
        items, popularity = self.inputs(dataobject)
        return self.result(tail_coverage(items, tail_mask(popularity, self.tail_ratio), self.topk))


class TailExposure(_PopularityMetric):
    r"""Share of all top-K slots held by tail items (the SPRINT paper's Fair-alpha@K, alpha = ``tail_ratio``)."""

    name = "tailexposure"

    def calculate_metric(self, dataobject):
        items, popularity = self.inputs(dataobject)
        return self.result(tail_exposure(items, tail_mask(popularity, self.tail_ratio), self.topk))


class TailRecall(_PopularityMetric):
    r"""Recall restricted to held-out tail items, averaged over the users that have at least one
    (``nan`` when no evaluated user has a held-out tail item). With one held-out item per user (leave-one-out)
    this is the tail hit rate HR_tail@K."""

    metric_need = ["rec.items", "rec.positives", "data.item_popularity"]
    name = "tailrecall"

    def calculate_metric(self, dataobject):
        items, popularity = self.inputs(dataobject)
        positives = _require(dataobject, "rec.positives", "TailRecall", "evaluate with a recbole_sprint trainer")
        return self.result(tail_recall(items, positives, tail_mask(popularity, self.tail_ratio), self.topk))


_FACTOR_HINT = (
    "evaluate with a recbole_sprint trainer in full-ranking mode (eval_args.mode: full) and a model with "
    "score factors (recbole_sprint.evaluator.factors)"
)


class _FactorMetric(AbstractMetric):
    """Base of the metrics that read model score factors: fails at construction (i.e. when the trainer is built)
    if the configured model has none."""

    metric_type = EvaluatorType.RANKING

    def __init__(self, config):
        super().__init__(config)
        from recbole_sprint.utils import get_model  # late: recbole_sprint.utils imports the model packages

        try:
            model_class = get_model(config["model"])
        except ValueError:  # a model class given to Config directly: checked at the first evaluation instead
            return
        if not has_score_factors(model_class):
            raise NotImplementedError(
                f"{type(self).__name__} needs the score factors of {model_class.__name__}, which has neither a "
                "score_factors(interaction) method nor an adapter in recbole_sprint.evaluator.factors.ADAPTERS"
            )


class SpectralCollapse(_FactorMetric):
    r""":math:`\sigma_1^2/\sum_k\sigma_k^2` of the full score matrix of the evaluated users over the
    non-padding items, from thin QR factors of the users' final states and the item matrix (never |U| x |I|).
    Smaller = less collapsed. Needs model score factors (:mod:`recbole_sprint.evaluator.factors`)."""

    metric_need = ["rec.user_factors", "model.item_factors"]
    smaller = True

    def calculate_metric(self, dataobject):
        users = _require(dataobject, "rec.user_factors", "SpectralCollapse", _FACTOR_HINT)  # [U, d]
        items = _require(dataobject, "model.item_factors", "SpectralCollapse", _FACTOR_HINT)  # [num_items, d]
        bias = dataobject.get("model.item_bias")[1:] if "model.item_bias" in dataobject else None
        value = spectral_collapse(users, items[1:], bias)  # padding item dropped
        return {"spectralcollapse": round(float(value), self.decimal_place)}


class InformationAbundance(_FactorMetric):
    r""":math:`\sum_k\sigma_k/\sigma_1` of the non-padding item-embedding matrix (Guo et al., ICML 2024).
    Larger = less collapsed (at most the embedding size)."""

    metric_need = ["model.item_factors"]

    def calculate_metric(self, dataobject):
        items = _require(dataobject, "model.item_factors", "InformationAbundance", _FACTOR_HINT)
        return {"informationabundance": round(float(information_abundance(items[1:])), self.decimal_place)}


class HistoryShare(AbstractMetric):
    r"""Share of the top-K slots, ranked before history masking, that hold an item of the user's own history
    (:mod:`recbole_sprint.evaluator.history`). Shows the failure that ``eval_exclude_history`` hides: a model
    whose top-1 is the item the user just consumed has ``HistoryShare@1`` near 1."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.history"]
    smaller = True

    def __init__(self, config):
        super().__init__(config)
        self.topk = _topk_list(config)

    def calculate_metric(self, dataobject):
        hint = (
            "evaluate with a recbole_sprint trainer in full-ranking mode (eval_args.mode: full) on data built by "
            "recbole_sprint.data.data_preparation, which gives the evaluation loaders the users' histories"
        )
        hits = _require(dataobject, "rec.history", "HistoryShare", hint).double()  # [U, max_k]
        ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
        per_user = hits.cumsum(dim=1) / ranks  # [U, max_k]
        values = per_user.mean(dim=0)[_rank_positions(self.topk, hits.device)]
        return {f"historyshare@{k}": round(float(v), self.decimal_place) for k, v in zip(self.topk, values.tolist())}


# RecBole's metrics, vectorised (same definitions, same floating-point operations) ---------------------
def _dense_counts(count_items, item_matrix):
    """{item id: count} as a dense int64 array covering every id of ``item_matrix`` and of the counter."""
    size = int(max(max(count_items, default=0), item_matrix.max(initial=0))) + 1
    dense = np.zeros(size, dtype=np.int64)
    if count_items:
        dense[np.fromiter(count_items.keys(), dtype=np.int64)] = np.fromiter(count_items.values(), dtype=np.int64)
    return dense


class AveragePopularity(recbole_metrics.AveragePopularity):
    """RecBole's ``AveragePopularity`` with an array lookup instead of a Python loop over every slot."""

    def get_pop(self, item_matrix, item_count):
        return _dense_counts(item_count, item_matrix)[item_matrix].astype(item_matrix.dtype)


class TailPercentage(recbole_metrics.TailPercentage):
    """RecBole's ``TailPercentage`` with ``np.isin`` instead of a list-membership test per slot (same tail set:
    ``tail_ratio`` > 1 is a count threshold, else the bottom ``max(int(len(counter) * tail_ratio), 1)`` counter
    items by (count, id); items missing from the training counter are never tail)."""

    def get_tail(self, item_matrix, count_items):
        if self.tail > 1:
            tail_items = [item for item, cnt in count_items.items() if cnt <= self.tail]
        else:
            ordered = sorted(count_items.items(), key=lambda kv: (kv[1], kv[0]))
            cut = max(int(len(ordered) * self.tail), 1)
            tail_items = [item for item, _ in ordered[:cut]]
        tail_items = np.asarray(tail_items, dtype=np.int64)
        return np.isin(item_matrix, tail_items).astype(item_matrix.dtype)


class GiniIndex(recbole_metrics.GiniIndex):
    """RecBole's ``GiniIndex`` counting recommendations with ``np.unique`` instead of a ``Counter``."""

    def get_gini(self, item_matrix, num_items):
        sorted_count = np.sort(np.unique(item_matrix, return_counts=True)[1])
        num_recommended_items = sorted_count.shape[0]
        total_num = item_matrix.shape[0] * item_matrix.shape[1]
        idx = np.arange(num_items - num_recommended_items + 1, num_items + 1)
        gini_index = np.sum((2 * idx - num_items - 1) * sorted_count) / total_num
        gini_index /= num_items
        return gini_index
