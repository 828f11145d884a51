r"""HSTU
################################################

Reference:
    Jiaqi Zhai et al. "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for
    Generative Recommendations." ICML 2024.

Reference code (read for the spec, not copied):
    facebookresearch/generative-recommenders, ``research/modeling/sequential/hstu.py`` (the research model
    behind the paper's public-dataset tables); spec: ``../shared/spec/anchors.md`` sections 1.2-1.4.

The research HSTU as a RecBole sequential model:

* input: ``item_emb * sqrt(d) + pos_emb``, dropout, padding zeroed;
* ``n_layers`` :class:`~recbole_sprint.model.layers.HSTULayer` blocks (pointwise SiLU attention with a
  relative position + time-bucket bias, causal; no softmax, no FFN); padding re-zeroed after each block
  (the research model is jagged: padded positions do not exist there); ``hstu_ffn: True`` adds a SwiGLU
  feed-forward sub-block of width ``inner_size`` to each block, as the SPRINT paper's HSTU (spec sprint.md
  section 4.2: the authors' code has it as an option, on in their shipped ML-1M config), off by default;
* L2-normalised user (hidden state) and item representations; loss ``sampled_softmax`` (uniform negatives,
  temperature, a negative equal to the positive masked with -5e4) or ``CE`` (full softmax).

Timestamps (``hstu_time_bias: True``): the bias of query ``i`` uses ``t[i+1] - t[j]`` (the time of the *next*
interaction), as in the research code. For the last query, ``t[len]`` is the time of the interaction being
predicted. ``hstu_target_time_visible: False`` (default) replaces it by the last observed time ``t[len-1]``
(no look at the target's timestamp); ``True`` restores the research behaviour, where the request time is an
input (RecBole's prefix samples carry the target's timestamp in ``TIME_FIELD``).

Timestamps must be in seconds: HSTU raises if RecBole min-max normalises the time field (``normalize_all:
True`` in RecBole's ml-100k.yaml) or if the dataset has no time list (set ``hstu_time_bias: False`` for a
position-only bias). RecBole stores float fields as float32 (Unix-second timestamps ~1e9 exact to 64 s only);
``exact_timestamps = True`` makes the plugin's ``create_dataset`` keep the time field in float64
(:mod:`recbole_sprint.data.dataset.exact_time_dataset`).

``train_mode: full_sequence`` (:mod:`recbole_sprint.model.full_sequence`; the research code's own protocol):
one row per user, a next-item loss at every position, with ``loss_type`` ``sampled_softmax``, ``CE`` or ``BCE``
(the SPRINT paper's); training logits are ``cos / sampled_softmax_temperature`` for every loss. Query times in
that mode: ``hstu_target_time_visible: True`` biases position ``i`` with ``t[i+1]``, the time of its target (the
research code); ``False`` (default) biases every position with its own time ``t[i]``, i.e. as the last position
is biased at evaluation, so no training position sees its target's time.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_sprint.model.full_sequence import FullSequence
from recbole_sprint.model.layers import HSTULayer, relative_time_buckets, truncated_normal_
from recbole_sprint.model.losses import item_rows

HSTU_LOSS_TYPES = ("sampled_softmax", "CE")
NEGATIVE_COLLISION_LOGIT = -5e4  # logit of a sampled negative that equals the positive (research value)


class HSTU(FullSequence, SequentialRecommender):
    r"""HSTU (research variant) for RecBole's prefix training or the plugin's ``train_mode: full_sequence``."""

    prefix_loss_types = HSTU_LOSS_TYPES
    exact_timestamps = True  # time buckets: recbole_sprint.data.create_dataset keeps TIME_FIELD in float64

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_layers = config["n_layers"]
        self.n_heads = config["n_heads"]
        self.hidden_size = config["hidden_size"]
        self.hidden_dropout_prob = config["hidden_dropout_prob"]  # input dropout
        self.linear_dropout_prob = config["linear_dropout_prob"]  # before W_o
        self.attn_dropout_prob = config["attn_dropout_prob"]  # on P (research: none)
        self.layer_norm_eps = config["layer_norm_eps"]
        self.l2_norm_eps = config["l2_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.num_time_buckets = config["hstu_num_time_buckets"]
        self.time_bias = config["hstu_time_bias"]
        self.target_time_visible = config["hstu_target_time_visible"]
        self.loss_type = config["loss_type"]
        self.num_negatives = config["num_negatives"]
        self.temperature = config["sampled_softmax_temperature"]
        self.ffn = config["hstu_ffn"]
        self.inner_size = config["inner_size"] if self.ffn else None
        self._check_config()
        self.TIME_FIELD = config["TIME_FIELD"]
        self.TIME_SEQ = None if self.TIME_FIELD is None else self.TIME_FIELD + config["LIST_SUFFIX"]
        if self.time_bias:
            self._check_time_field(config, dataset)

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.input_dropout = nn.Dropout(self.hidden_dropout_prob)
        self.layers = nn.ModuleList(
            HSTULayer(
                hidden_size=self.hidden_size,
                n_heads=self.n_heads,
                max_seq_length=self.max_seq_length,
                num_buckets=self.num_time_buckets,
                time_bias=self.time_bias,
                linear_dropout_prob=self.linear_dropout_prob,
                attn_dropout_prob=self.attn_dropout_prob,
                layer_norm_eps=self.layer_norm_eps,
                initializer_range=self.initializer_range,
                inner_size=self.inner_size,
            )
            for _ in range(self.n_layers)
        )
        with torch.no_grad():
            truncated_normal_(self.item_embedding.weight, std=self.initializer_range)
            self.item_embedding.weight[0].zero_()  # padding row
            truncated_normal_(self.position_embedding.weight, std=(1.0 / self.hidden_size) ** 0.5)

    # -- configuration checks ------------------------------------------------------------------------
    def _check_config(self):
        # full_sequence: FullSequence.__init__ has checked loss_type against recbole_sprint.model.losses.LOSS_TYPES
        if self.train_mode == "prefix" and self.loss_type not in HSTU_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(HSTU_LOSS_TYPES)} for HSTU, got {self.loss_type!r}")
        if not isinstance(self.n_heads, int) or self.n_heads < 1 or self.hidden_size % self.n_heads != 0:
            raise ValueError(
                f"n_heads must be a positive integer dividing hidden_size for HSTU (per-head size = "
                f"hidden_size / n_heads), got n_heads={self.n_heads!r}, hidden_size={self.hidden_size!r}"
            )
        if self.loss_type != "CE" and (not isinstance(self.num_negatives, int) or self.num_negatives < 1):
            raise ValueError(f"num_negatives must be an integer >= 1 for {self.loss_type}, got {self.num_negatives!r}")
        if not self.temperature > 0:
            raise ValueError(f"sampled_softmax_temperature must be > 0, got {self.temperature!r}")
        if self.ffn and (not isinstance(self.inner_size, int) or self.inner_size < 1):
            raise ValueError(f"inner_size must be an integer >= 1 with hstu_ffn: True, got {self.inner_size!r}")

    def _check_time_field(self, config, dataset):
        field_types = getattr(dataset, "field2type", {})
        if self.TIME_FIELD is None or self.TIME_SEQ not in field_types:
            raise ValueError(
                f"HSTU's time bias (hstu_time_bias: True) needs timestamps, but the dataset "
                f"[{config['dataset']}] has no time-list field [{self.TIME_SEQ}] (TIME_FIELD: {self.TIME_FIELD!r}, "
                f"loaded fields: {sorted(field_types)}). Load a time field (TIME_FIELD, load_col) or set "
                "hstu_time_bias: False (relative position bias only)."
            )
        normalized = config["normalize_all"] is True or self.TIME_FIELD in (config["normalize_field"] or [])
        if normalized:
            raise ValueError(
                f"HSTU's time buckets need the time field [{self.TIME_FIELD}] in seconds, but RecBole min-max "
                "normalises it (normalize_all: True, e.g. from RecBole's ml-100k.yaml, or normalize_field). "
                "Set normalize_all: False (and keep the time field out of normalize_field), or "
                "hstu_time_bias: False."
            )

    # -- encoder ---------------------------------------------------------------------------------------
    def query_timestamps(self, timestamps, item_seq_len, next_timestamp=None):
        """``[B, n]``: the time query ``i`` is biased with: ``t[i+1]`` (research convention).

        For the last valid query ``i = len-1``, ``t[len]`` is ``next_timestamp`` (the target's time) when
        given, else the last observed time ``t[len-1]``. Entries at padded positions are irrelevant.

        Args:
            timestamps: ``[B, n]`` times of the items (right-padded); item_seq_len: ``[B]``;
            next_timestamp: ``[B]`` or ``None``.
        """
        batch = timestamps.size(0)
        rows = torch.arange(batch, device=timestamps.device)
        last_observed = timestamps[rows, (item_seq_len - 1).clamp_min(0)]  # [B]
        appended = next_timestamp if next_timestamp is not None else last_observed
        extended = torch.cat([timestamps, timestamps.new_zeros(batch, 1)], dim=1)  # [B, n + 1]
        extended[rows, item_seq_len] = appended.to(extended.dtype)
        return extended[:, 1:]

    def embed_items(self, item_seq):
        """``[B, n] -> [B, n, d]``: ``item_emb * sqrt(d) + pos_emb``, dropout, padding zeroed."""
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        x = self.item_embedding(item_seq) * (self.hidden_size**0.5) + self.position_embedding(positions)
        return self.input_dropout(x) * (item_seq != 0).unsqueeze(-1)

    def forward(self, item_seq, item_seq_len, timestamps=None, next_timestamp=None, query_times=None):
        """Hidden states at every position, L2-normalised: ``[B, n, d]`` (padded rows are 0).

        Args:
            item_seq: ``[B, n]`` right-padded item ids; item_seq_len: ``[B]``.
            timestamps: ``[B, n]`` times of the items (needed when ``hstu_time_bias``).
            next_timestamp: ``[B]`` time of the interaction to predict, or ``None`` (see :meth:`query_timestamps`).
            query_times: ``[B, n]`` overrides the query times entirely (e.g. for full-sequence training).
        """
        valid = (item_seq != 0).unsqueeze(-1)  # [B, n, 1]
        n = item_seq.size(1)
        causal_mask = torch.tril(torch.ones(n, n, device=item_seq.device))  # [n, n]
        if self.time_bias:
            if timestamps is None:
                raise ValueError("HSTU with hstu_time_bias: True needs the timestamps of the sequence")
            if query_times is None:
                query_times = self.query_timestamps(timestamps, item_seq_len, next_timestamp)
            time_buckets = relative_time_buckets(query_times, timestamps, self.num_time_buckets)  # [B, n, n]
        else:
            time_buckets = None
        x = self.embed_items(item_seq)  # [B, n, d]
        for layer in self.layers:
            x = layer(x, causal_mask, time_buckets) * valid
        return self.l2_normalize(x)

    def l2_normalize(self, x):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(self.l2_norm_eps)

    def gather_last(self, hidden, item_seq_len):
        """``[B, n, d] -> [B, d]``: the state at the last valid position (the user representation)."""
        return self.gather_indexes(hidden, item_seq_len - 1)

    def item_representations(self, items=None):
        """L2-normalised item embeddings: of ``items`` (any shape, ``[..., d]``) or of all ids (``[I, d]``)."""
        weight = self.item_embedding.weight if items is None else self.item_embedding(items)
        return self.l2_normalize(weight)

    # -- RecBole interaction helpers -----------------------------------------------------------------
    def _sequence_inputs(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        if not self.time_bias:
            return item_seq, item_seq_len, None, None
        next_timestamp = interaction[self.TIME_FIELD] if self.target_time_visible else None
        return item_seq, item_seq_len, interaction[self.TIME_SEQ], next_timestamp

    def user_representations(self, interaction):
        """``[B, d]`` L2-normalised user representation (last position)."""
        item_seq, item_seq_len, timestamps, next_timestamp = self._sequence_inputs(interaction)
        hidden = self.forward(item_seq, item_seq_len, timestamps, next_timestamp)  # [B, n, d]
        return self.gather_last(hidden, item_seq_len)

    def forward_all_positions(self, interaction):
        """``[B, n, d]`` for ``train_mode: full_sequence`` (query times: see the module docstring)."""
        item_seq, item_seq_len, timestamps, next_timestamp = self._sequence_inputs(interaction)
        query_times = timestamps if self.time_bias and not self.target_time_visible else None  # [B, n] or None
        return self.forward(item_seq, item_seq_len, timestamps, next_timestamp, query_times)

    @property
    def full_sequence_score_scale(self):
        return 1.0 / self.temperature  # CE/BCE train on cos / T, as prefix CE does

    def score_factors(self, interaction):
        """``(X [B, d], E [I, d])`` with full-sort scores ``X @ E.T`` (``E`` includes the padding row 0)."""
        return self.user_representations(interaction), self.item_representations()

    # -- losses --------------------------------------------------------------------------------------
    def sampled_softmax_loss(self, user, positives):
        """Mean over rows of ``-log softmax([pos, negs] / T)[0]``; ``user [N, d]``, ``positives [N]``."""
        negatives = torch.randint(
            1, self.n_items, (positives.size(0), self.num_negatives), device=positives.device
        )  # [N, K], uniform over all item ids (history not excluded, as in the research code)
        items = self.item_representations()  # [I, d]
        pos_logits = (user * item_rows(items, positives)).sum(-1, keepdim=True)  # [N, 1]
        neg_logits = torch.einsum("nd,nkd->nk", user, item_rows(items, negatives))  # [N, K]
        logits = torch.cat([pos_logits, neg_logits], dim=1) / self.temperature  # [N, 1 + K]
        collision = torch.cat([torch.zeros_like(pos_logits, dtype=torch.bool), negatives == positives[:, None]], 1)
        logits = logits.masked_fill(collision, NEGATIVE_COLLISION_LOGIT)
        return -F.log_softmax(logits, dim=1)[:, 0].mean()

    def full_softmax_loss(self, user, positives):
        """Cross-entropy over all items (padding id 0 excluded); ``user [N, d]``, ``positives [N]``."""
        logits = user @ self.item_representations().t() / self.temperature  # [N, I]
        padding = torch.zeros_like(logits[0], dtype=torch.bool)
        padding[0] = True
        return F.cross_entropy(logits.masked_fill(padding, float("-inf")), positives)

    def calculate_loss(self, interaction):
        if self.train_mode == "full_sequence":
            return self.calculate_full_sequence_loss(interaction)
        user = self.user_representations(interaction)  # [B, d]
        positives = interaction[self.POS_ITEM_ID]  # [B]
        if self.loss_type == "sampled_softmax":
            return self.sampled_softmax_loss(user, positives)
        return self.full_softmax_loss(user, positives)

    # -- evaluation ----------------------------------------------------------------------------------
    def predict(self, interaction):
        user = self.user_representations(interaction)  # [B, d]
        return (user * self.item_representations(interaction[self.ITEM_ID])).sum(-1)  # [B]

    def full_sort_predict(self, interaction):
        user, items = self.score_factors(interaction)
        return user @ items.t()  # [B, I] (cosine similarities; item 0 is masked by RecBole's evaluator)
