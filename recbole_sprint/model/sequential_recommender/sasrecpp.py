r"""SASRecPP
################################################

Reference:
    Wang-Cheng Kang and Julian McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018.

    Yang, Pan et al. "The Pitfall of Scaling Up: Uncovering and Mitigating Popularity Bias Amplification in
    Scaling Transformer-based Recommenders." KDD 2026 (its backbone "SASRec++").

SASRec++, the SPRINT paper's main backbone: SASRec rebuilt from modern decoder parts (spec
``../shared/spec/sasrecpp.md``; implemented from that description, not from the authors' GPL-3.0 code).

* input: the item table ``E [I+1, d]`` (row 0 = padding, kept at zero); no position embedding, no embedding
  scaling, no embedding dropout, no input norm;
* ``n_layers`` pre-norm blocks (:class:`~recbole_sprint.model.layers.SASRecPPBlock`):
  ``x + Attn(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))``; RMSNorm with eps ``rms_norm_eps`` (1e-6) computed in
  float32 with a learned scale; attention with q/k/v/o projections without bias, rotary position embedding
  (base ``rope_base`` = 10000, half-split rotation of q and k by the position index ``0 .. n-1``), causal plus
  padding mask, softmax, dropout on the probabilities (``attn_dropout_prob``: the only dropout of the model;
  ``hidden_dropout_prob`` is not read), output projection; SwiGLU ``W_down(SiLU(W_gate x) * W_up x)`` with inner
  size ``inner_size`` (the paper: 4d); no biases anywhere;
* a final RMSNorm; scores ``h_t . E[j]`` for every item ``j`` (output tied to the input table);
* initialisation: every linear and embedding weight normal(0, ``initializer_range`` = 0.02), norm scales 1,
  the padding row 0.

Attention (``attention_impl``): ``dense`` (default) materialises the ``[B, H, n, n]`` probabilities; ``fused``
computes the same attention without them (:mod:`recbole_sprint.model.fused_attention`: Triton kernels on CUDA, a
block-wise PyTorch version elsewhere), attention dropout inside the kernels, and gives SASRecPPSPRINT the column sums
directly. It needs right-padded rows (RecBole's layout), and equals ``dense`` to rounding with dropout 0 (with
dropout, the masks come from another random stream). For long sequences and large models: memory linear in ``n``.
``attention_keep_mask: stored`` (fused, dropout > 0) has its forward kernel keep the dropout mask it drew, as bits,
for the column-sum and backward kernels, which otherwise draw it again: the same numbers, less time.

Padding: RecBole pads on the right (the authors' code pads on the left). RoPE makes attention scores depend only
on the distance ``i - j``, and padded keys are masked, so a valid position's output is the same under either
convention; this model keeps RecBole's right padding (valid items at positions ``0 .. len-1``).

Parameters, for ``I`` items (RecBole's ``n_items = I + 1`` with the padding row), hidden size ``d``, ``L`` layers
and ``inner_size = 4d``:

.. math:: (I+1)\,d + L\,(4d^2 + 3 \cdot d \cdot 4d + 2d) + d

(item table; per layer q, k, v, o, then gate, up, down, then the two norm scales; the final norm's scale).

Training (:mod:`recbole_sprint.model.full_sequence`): ``train_mode: prefix`` is RecBole's SASRec protocol (one
sample per prefix, ``CE`` over all items or ``BPR`` at the last position); ``train_mode: full_sequence`` is the
authors' (one row per user, a next-item loss at every position: ``CE``, ``BCE`` or ``sampled_softmax``).
Evaluation scores the last valid position against the whole item table in both modes. The authors' optimisation
protocol (AdamW, linear warm-up and decay, gradient clipping, TF32) is a set of trainer options any model can
use: see :mod:`recbole_sprint.trainer.trainer`.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss
from torch import nn

from recbole_sprint.model.full_sequence import FullSequence
from recbole_sprint.model.fused_attention import KEEP_MASKS
from recbole_sprint.model.layers import ATTENTION_IMPLS, RMSNorm, SASRecPPBlock, rotary_cos_sin


class SASRecPP(FullSequence, SequentialRecommender):
    r"""SASRec++ (pre-RMSNorm, RoPE, SwiGLU, no biases, attention dropout only) for RecBole's prefix training or
    the plugin's ``train_mode: full_sequence``."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_layers = config["n_layers"]
        self.n_heads = config["n_heads"]
        self.hidden_size = config["hidden_size"]
        self.inner_size = config["inner_size"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.rms_norm_eps = config["rms_norm_eps"]
        self.rope_base = config["rope_base"]
        self.initializer_range = config["initializer_range"]
        self.loss_type = config["loss_type"]
        self.attention_impl = config["attention_impl"] or "dense"
        self.attention_keep_mask = config["attention_keep_mask"] or "recompute"
        self._check_config()

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.layers = nn.ModuleList(
            SASRecPPBlock(self.hidden_size, self.n_heads, self.inner_size, self.attn_dropout_prob, self.rms_norm_eps,
                          self.attention_impl, self.attention_keep_mask)
            for _ in range(self.n_layers)
        )
        self.final_norm = RMSNorm(self.hidden_size, self.rms_norm_eps)
        if self.train_mode == "prefix" and self.loss_type == "BPR":
            self.bpr_loss = BPRLoss()
        self.apply(self._init_weights)

    # -- configuration ---------------------------------------------------------------------------------
    def _check_config(self):
        for key in ("n_layers", "n_heads", "hidden_size", "inner_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1 for SASRecPP, got {value!r}")
        if self.hidden_size % self.n_heads != 0 or (self.hidden_size // self.n_heads) % 2 != 0:
            raise ValueError(
                f"n_heads must divide hidden_size into heads of even size for SASRecPP (RoPE rotates pairs of "
                f"dimensions), got n_heads={self.n_heads!r}, hidden_size={self.hidden_size!r}"
            )
        if not 0 <= self.attn_dropout_prob < 1:
            raise ValueError(f"attn_dropout_prob must be in [0, 1), got {self.attn_dropout_prob!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"attention_impl must be one of {', '.join(ATTENTION_IMPLS)} for SASRecPP, got {self.attention_impl!r}"
            )
        if self.attention_keep_mask not in KEEP_MASKS:
            raise ValueError(f"attention_keep_mask must be one of {', '.join(KEEP_MASKS)} for SASRecPP, got "
                             f"{self.attention_keep_mask!r}")
        for key in ("rms_norm_eps", "rope_base", "initializer_range"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{key} must be a number > 0 for SASRecPP, got {value!r}")

    def _init_weights(self, module):
        """normal(0, initializer_range) for every linear and embedding weight, padding row 0, norm scales 1."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    # -- encoder -----------------------------------------------------------------------------------------
    @staticmethod
    def attention_mask(item_seq):
        """``[B, 1, n, n]`` bool: query ``i`` may attend to key ``j`` iff ``j <= i`` and key ``j`` is an item."""
        n = item_seq.size(1)
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool, device=item_seq.device))  # [n, n]
        keys = item_seq != 0  # [B, n]
        return causal[None, None, :, :] & keys[:, None, None, :]

    def forward(self, item_seq, item_seq_len=None):
        """Hidden states at every position after the final RMSNorm, ``[B, n, d]``.

        Args:
            item_seq: ``[B, n]`` right-padded item ids (0 = padding); item_seq_len: ``[B]`` (unused: the mask
                comes from the ids; kept for RecBole's signature).
        """
        n = item_seq.size(1)
        x = self.item_embedding(item_seq)  # [B, n, d]
        if self.attention_impl == "fused":
            mask = (item_seq != 0).sum(1, dtype=torch.int32)  # [B] valid lengths of the right-padded rows
        else:
            mask = self.attention_mask(item_seq)  # [B, 1, n, n]
        cos, sin = rotary_cos_sin(n, self.hidden_size // self.n_heads, self.rope_base, item_seq.device)  # [n, d_h]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)  # [B, n, d]
        return self.final_norm(x)

    def user_representations(self, interaction):
        """``[B, d]``: the output at the last valid position."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        return self.gather_indexes(self.forward(item_seq, item_seq_len), item_seq_len - 1)

    def forward_all_positions(self, interaction):
        """``[B, n, d]`` for ``train_mode: full_sequence`` (position ``t`` predicts the item after input ``t``)."""
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])

    def item_representations(self):
        return self.item_embedding.weight  # [I+1, d], row 0 = padding

    def graph_fields(self):
        return self.ITEM_SEQ, self.ITEM_SEQ_LEN  # what forward_all_positions reads (backbone_compile: cuda_graph)

    # -- losses --------------------------------------------------------------------------------------------
    def calculate_loss(self, interaction):
        if self.train_mode == "full_sequence":
            return self.calculate_full_sequence_loss(interaction)
        user = self.user_representations(interaction)  # [B, d]
        positives = interaction[self.POS_ITEM_ID]  # [B]
        if self.loss_type == "BPR":
            negatives = interaction[self.NEG_ITEM_ID]  # [B]
            pos_score = (user * self.item_embedding(positives)).sum(-1)  # [B]
            neg_score = (user * self.item_embedding(negatives)).sum(-1)  # [B]
            return self.bpr_loss(pos_score, neg_score)
        logits = user @ self.item_representations().t()  # [B, I+1], as RecBole's SASRec (CE)
        return F.cross_entropy(logits, positives)

    # -- evaluation ----------------------------------------------------------------------------------------
    def predict(self, interaction):
        user = self.user_representations(interaction)  # [B, d]
        return (user * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)  # [B]

    def full_sort_predict(self, interaction):
        user = self.user_representations(interaction)  # [B, d]
        return user @ self.item_representations().t()  # [B, I+1] (item 0 is masked by RecBole's evaluator)

    def score_factors(self, interaction):
        """``(X [B, d], E [I+1, d], None)`` with ``full_sort_predict == X @ E.T`` (SpectralCollapse,
        InformationAbundance: :mod:`recbole_sprint.evaluator.factors`)."""
        return self.user_representations(interaction), self.item_representations(), None
