"""The evaluation collector of the plugin's trainers: RecBole's Collector (with the compat fix) plus the data
that the plugin's metrics request.

=========================  ================================================================================
need key                   content (collected only when a configured metric lists the key)
=========================  ================================================================================
``data.item_popularity``   [num_items] interaction counts per item id (``popularity_source``), once per fit
``rec.positives``          [P, 2] (evaluation row, held-out item id) of every held-out item
``rec.user_factors``       [U, d] final user states X of the evaluated users (full ranking only), from the
                           trainer's scoring pass (:meth:`user_factors_collect`)
``model.item_factors``     [num_items, d] item matrix E such that scores = X E^T (+ ``model.item_bias``)
``model.item_bias``        [num_items] per-item score bias, only for models that have one (BERT4Rec)
``rec.history``            [U, max_k] bool: top-k slot of the ranking before history masking holds an item of
                           the user's history (:meth:`history_collect`, called by the plugin's trainers)
=========================  ================================================================================

Every tensor is moved to the CPU before the metrics see it (:class:`~recbole_sprint.compat.CompatCollector`),
so metrics work the same whether the model ran on a GPU or the CPU.
"""

import torch

from recbole_sprint.compat import CompatCollector
from recbole_sprint.evaluator.factors import factor_scores, score_factors
from recbole_sprint.evaluator.popularity import check_popularity_source, item_popularity

# rows of the first batch used to check that a model's score factors reproduce its scores
_CHECK_ROWS = 8


class SprintCollector(CompatCollector):
    """Collector for RecBole's and the plugin's metrics (installed by the plugin's trainers)."""

    def __init__(self, config):
        super().__init__(config)
        self.popularity_source = None
        if self.register.need("data.item_popularity"):
            self.popularity_source = check_popularity_source(config["popularity_source"])
        self.needs_user_factors = bool(self.register.need("rec.user_factors"))
        self.needs_item_factors = self.needs_user_factors or bool(self.register.need("model.item_factors"))
        self.needs_history_hits = bool(self.register.need("rec.history"))
        self._reset_evaluation()

    def _reset_evaluation(self):
        self._row_offset = 0  # evaluation rows seen so far (positive_u is a row index within its batch)
        self._score_check = None  # (interaction, full ranking?) of the first rows of the first batch

    def per_evaluation_keys(self):
        return super().per_evaluation_keys() + [
            "rec.positives",
            "rec.user_factors",
            "model.item_factors",
            "model.item_bias",
            "rec.history",
        ]

    def history_collect(self, hits):
        """``hits [B, max_k]`` bool of one batch: top-k slots (before masking) holding a history item."""
        self.data_struct.update_tensor("rec.history", hits)

    def user_factors_collect(self, users):
        """``users [B, d]``: the final user states of one full-ranking batch, whose scores are ``users E^T (+ b)``
        (the plugin's trainers score so when :attr:`needs_user_factors`: one forward pass gives both)."""
        self.data_struct.update_tensor("rec.user_factors", users)

    def data_collect(self, train_data):
        super().data_collect(train_data)
        if self.register.need("data.item_popularity"):
            self.data_struct.set("data.item_popularity", item_popularity(train_data._dataset, self.popularity_source))

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if self.register.need("rec.positives"):
            rows = positive_u.to(scores_tensor.device) + self._row_offset  # [P] evaluation rows
            pairs = torch.stack([rows, positive_i.to(scores_tensor.device)], dim=1)  # [P, 2]
            self.data_struct.update_tensor("rec.positives", pairs)
        self._row_offset += scores_tensor.shape[0]
        if self.needs_item_factors:
            # one interaction row per evaluated user: full ranking (sampled ranking has one per candidate)
            one_row_per_user = len(interaction) == scores_tensor.shape[0]
            if self._score_check is None:
                self._score_check = (interaction[:_CHECK_ROWS], one_row_per_user)  # sampled: nothing to check

    def model_collect(self, model):
        super().model_collect(model)
        if self._score_check is None:
            return
        device = next(model.parameters()).device
        rows, full_ranking = self._score_check
        rows = rows.to(device)
        with torch.no_grad():
            users, items, bias = score_factors(model, rows)
            if full_ranking:  # the factors must give the model's own scores: the trainer ranks by them
                tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
                scores = model.full_sort_predict(rows).view(len(rows), -1)  # [n, num_items] (Pop's is flat)
                self._check_factors(model, users, items, bias, scores, tolerance=5e-3 if tf32 else 1e-4)
            self.data_struct.set("model.item_factors", items.detach())
            if bias is not None:
                self.data_struct.set("model.item_bias", bias.detach())

    @staticmethod
    def _check_factors(model, users, items, bias, scores, tolerance=1e-4):
        """Raise if X E^T (+ b) differs from the model's ``full_sort_predict`` ``scores`` of the same rows (finite
        entries only) by more than ``tolerance`` relative to the scores' scale. The two need not run the same
        kernels (a model's ``full_sort_predict`` may compute its product otherwise), and under TF32 matmuls
        (``tf32: True`` on CUDA) a product's rounding depends on its shapes (the same product for 8 rows and for a
        whole batch differed by ~1e-3 relative on the H200), so the tolerance is then 5e-3; a wrong factorisation
        is off by O(1)."""
        rebuilt = factor_scores(users, items, bias)  # [n, num_items]
        scores = scores.cpu()
        rebuilt = rebuilt.cpu().to(scores.dtype)
        if rebuilt.shape != scores.shape:
            raise RuntimeError(
                f"score_factors of {type(model).__name__} give scores of shape {tuple(rebuilt.shape)}, "
                f"but the model's full_sort_predict gives {tuple(scores.shape)}"
            )
        finite = torch.isfinite(scores)
        error = (rebuilt[finite] - scores[finite]).abs().max().item() if finite.any() else 0.0
        scale = scores[finite].abs().max().item() if finite.any() else 0.0
        if error > tolerance * (1.0 + scale):
            raise RuntimeError(
                f"score_factors of {type(model).__name__} do not reproduce its full_sort_predict scores "
                f"(max abs difference {error:.3g}); implement score_factors(interaction) for this model"
            )

    def get_data_struct(self):
        self._reset_evaluation()
        return super().get_data_struct()
