"""Full-ranking evaluation without the user's history (``eval_exclude_history``), for every trainer of the plugin.

:class:`HistoryMaskingMixin` goes into the bases of :class:`~recbole_sprint.trainer.SprintTrainer` and of the
``Compat<Trainer>`` classes that :func:`recbole_sprint.utils.get_trainer` builds for RecBole's special trainers,
so plugin models and RecBole's baselines are ranked alike. Per evaluation batch:

1. the model scores every item (RecBole's ``_full_sort_batch_eval``, padding item at ``-inf``). When a metric
   reads the user states (``SpectralCollapse``), the scores are instead the product of the model's score factors
   ``X E^T (+ b)`` (:mod:`recbole_sprint.evaluator.factors`: the same operations as ``full_sort_predict`` for every
   model the plugin knows; the collector checks them against ``full_sort_predict`` on the first rows of every
   evaluation and raises if they differ) and ``X`` goes to the collector: one forward pass per batch, not two. A
   batch that runs out of GPU memory (e.g. beside other runs on one GPU) is scored again in halves, recursively down
   to one row, with one warning: the same scores row by row, so the same metrics (``eval_batch_size`` sets the size
   that is tried; :func:`recbole_sprint.utils.memory.in_halves_when_out_of_memory`);
2. the batch's history ``(row, item)`` pairs: for a sequential model from the loader's
   :class:`~recbole_sprint.evaluator.history.UserHistory` (attached by :func:`recbole_sprint.data.data_preparation`),
   for a general model RecBole's own ``history_index``; the row's target is never among them;
3. ``HistoryShare@K`` (if listed in ``metrics``) is read off the top-K of the ranking as scored;
4. with ``eval_exclude_history: True`` (the plugin's default) the pairs are set to ``-inf`` before every other
   metric sees the scores. RecBole's general models are always masked (RecBole's behaviour).
"""

import torch
from recbole.utils import ModelType

from recbole_sprint.evaluator.factors import factor_scores, score_factors
from recbole_sprint.evaluator.history import check_exclude_history, history_hits, history_pairs, mask_history
from recbole_sprint.utils.memory import WarnOnce, in_halves_when_out_of_memory


class HistoryMaskingMixin:
    """Mix into a RecBole trainer whose ``eval_collector`` is a :class:`~recbole_sprint.evaluator.SprintCollector`."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.exclude_history = check_exclude_history(config)
        self.sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
        self._eval_history = None  # the UserHistory of the loader being evaluated
        self._warn_split = WarnOnce("an evaluation batch of {rows} rows ran out of GPU memory: scoring such batches in "
                                    "halves (same scores; lower eval_batch_size to avoid the retry)")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        history = getattr(eval_data, "user_history", None) if self.sequential else None
        self._eval_history = history.to(self.device) if history is not None else None
        try:
            return super().evaluate(
                eval_data, load_best_model=load_best_model, model_file=model_file, show_progress=show_progress
            )
        finally:
            self._eval_history = None

    def _history_pairs(self, interaction, history_index, positive_i):
        """``(rows, items)`` of the batch's history on the scores' device, or ``None``."""
        if history_index is not None:  # RecBole's general models: targets already left out
            return tuple(index.to(self.device) for index in history_index)
        if self._eval_history is None:
            return None
        users = interaction[self.config["USER_ID_FIELD"]].to(self.device)  # [B]
        return history_pairs(self._eval_history, users, positive_i.to(self.device))

    def _scores(self, interaction):
        """``[B, I]`` full-sort scores of the batch (padding at ``-inf``): RecBole's, or the score factors' product
        when the collector needs the user states (which it then gets); in halves after running out of GPU memory
        (down to one row; a row that does not fit raises)."""
        collector = self.eval_collector
        if getattr(collector, "needs_user_factors", False):
            scores, users = in_halves_when_out_of_memory(self._factored_scores, interaction, self._warn_split)
            collector.user_factors_collect(users)
            return scores

        def full_sort(rows):
            return super(HistoryMaskingMixin, self)._full_sort_batch_eval((rows, None, None, None))[1]

        return in_halves_when_out_of_memory(full_sort, interaction, self._warn_split)

    def _factored_scores(self, interaction):
        """``(scores [B, I], X [B, d])``: ``X E^T (+ b)`` from the model's score factors, padding at ``-inf``."""
        users, items, bias = score_factors(self.model, interaction.to(self.device))  # [B, d], [I, d], [I] | None
        scores = factor_scores(users, items, bias)  # [B, I], the product full_sort_predict computes
        if scores.shape[1] != self.tot_item_num:
            raise RuntimeError(
                f"score_factors of {type(self.model).__name__} give {scores.shape[1]} item columns, the dataset has "
                f"{self.tot_item_num} items (padding included): E must have one row per item"
            )
        scores[:, 0] = -torch.inf  # the padding item, as RecBole's _full_sort_batch_eval
        return scores, users

    def _full_sort_batch_eval(self, batched_data):
        interaction, history_index, positive_u, positive_i = batched_data
        scores = self._scores(interaction)  # [B, I] as scored, padding at -inf
        pairs = self._history_pairs(interaction, history_index, positive_i)
        if pairs is None:
            return interaction, scores, positive_u, positive_i
        rows, items = pairs
        collector = self.eval_collector
        if getattr(collector, "needs_history_hits", False):
            collector.history_collect(history_hits(scores, rows, items, max(collector.topk)))
        if self.exclude_history or history_index is not None:
            mask_history(scores, rows, items)
        return interaction, scores, positive_u, positive_i
