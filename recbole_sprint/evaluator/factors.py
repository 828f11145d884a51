"""Score factors: the protocol that the ``SpectralCollapse`` and ``InformationAbundance`` metrics read.

A model whose full-ranking scores are a product of user states and an item matrix exposes them as::

    def score_factors(self, interaction):
        '''(X, E) or (X, E, b) such that self.full_sort_predict(interaction) == X @ E.T (+ b).'''
        return X, E        # X: [B, d] final user states, E: [num_items, d] item matrix (row 0 = padding)

``b`` ([num_items], optional) is an additive per-item score bias (BERT4Rec's ``output_bias``). ``E`` must
have one row per column of ``full_sort_predict`` (padding item 0 included; the metrics drop it). The
evaluation collector checks, once per evaluation, that the factors reproduce the model's scores on the
first rows of the first batch, so a wrong implementation fails loudly.

Models without the method are looked up in :data:`ADAPTERS` (by class, along the MRO): RecBole's
``SASRec`` (so ``SASRecSPRINT`` too), ``BERT4Rec`` and ``Pop`` (the popularity baseline of every table). A plugin model (e.g. HSTU) implements the method.
"""

from recbole.model.general_recommender.pop import Pop
from recbole.model.sequential_recommender.bert4rec import BERT4Rec
from recbole.model.sequential_recommender.sasrec import SASRec


def sasrec_factors(model, interaction):
    """SASRec: X = forward(item_seq, item_seq_len) [B, d] (state at the last position), E = item_embedding."""
    item_seq = interaction[model.ITEM_SEQ]  # [B, L]
    item_seq_len = interaction[model.ITEM_SEQ_LEN]  # [B]
    user_states = model.forward(item_seq, item_seq_len)  # [B, d]
    return user_states, model.item_embedding.weight, None  # E: [num_items, d]


def bert4rec_factors(model, interaction):
    """BERT4Rec (as its ``full_sort_predict``): a mask token appended after the history; X = the output at the
    mask position [B, d], E = item_embedding without the mask-token row [num_items, d], b = output_bias."""
    item_seq = model.reconstruct_test_data(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
    output = model.forward(item_seq)  # [B, L, d]
    user_states = model.gather_indexes(output, interaction[model.ITEM_SEQ_LEN] - 1)  # [B, d]
    return user_states, model.item_embedding.weight[: model.n_items], model.output_bias


def pop_factors(model, interaction):
    """Pop: every user gets the same scores, the normalised interaction counts: X = 1 [B, 1], E = counts [I, 1]
    (a rank-one score matrix, SpectralCollapse 1 by construction)."""
    scores = model.item_cnt.float() / model.max_cnt  # [num_items, 1], as Pop.full_sort_predict
    users = scores.new_ones(len(interaction), 1)  # [B, 1]
    return users, scores, None


ADAPTERS = {SASRec: sasrec_factors, BERT4Rec: bert4rec_factors, Pop: pop_factors}


def factor_scores(users, items, bias=None):
    """``X E^T (+ b)``: the full-ranking scores ``[B, num_items]`` that score factors ``(X, E, b)`` stand for."""
    scores = users @ items.T
    return scores if bias is None else scores + bias


def has_score_factors(model):
    """Whether :func:`score_factors` can handle ``model`` (a model or a model class)."""
    model_class = model if isinstance(model, type) else type(model)
    return callable(getattr(model_class, "score_factors", None)) or any(cls in ADAPTERS for cls in model_class.__mro__)


def score_factors(model, interaction):
    """``(X [B, d], E [num_items, d], b [num_items] or None)`` of ``model`` for a batch of ``interaction``.

    Raises:
        NotImplementedError: the model neither defines ``score_factors`` nor has an adapter.
    """
    method = getattr(model, "score_factors", None)
    if callable(method):
        factors = tuple(method(interaction))
        if len(factors) == 2:
            factors = factors + (None,)
        if len(factors) != 3:
            raise ValueError(f"{type(model).__name__}.score_factors must return (X, E) or (X, E, b)")
        return factors
    for cls in type(model).__mro__:
        if cls in ADAPTERS:
            return ADAPTERS[cls](model, interaction)
    raise NotImplementedError(
        f"SpectralCollapse / InformationAbundance need the score factors of {type(model).__name__}: give it a "
        "method score_factors(interaction) -> (X [B, d], E [num_items, d]) with full_sort_predict == X @ E.T "
        f"(see recbole_sprint.evaluator.factors; adapters exist for {', '.join(c.__name__ for c in ADAPTERS)})"
    )
