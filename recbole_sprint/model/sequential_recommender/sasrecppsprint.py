r"""SASRecPPSPRINT
################################################

Reference:
    Wang-Cheng Kang and Julian McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018.

    Yang, Pan et al. "The Pitfall of Scaling Up: Uncovering and Mitigating Popularity Bias Amplification in
    Scaling Transformer-based Recommenders." KDD 2026.

:class:`~recbole_sprint.model.sequential_recommender.sasrecpp.SASRecPP` (the paper's SASRec++) with the SPRINT
regulariser added to its training loss (spec sprint.md section 1, sasrecpp.md "SPRINT on SASRec++"). Per layer,
the attention term reads the softmax probabilities after attention dropout (the matrix applied to V), the
spectral norms of each head's row block of ``W_V`` (``v_proj``) and of ``W_O`` (``o_proj``); the FFN term is
``log1p(sigma(W_up) sigma(W_down))``: the SwiGLU gate ``W_gate`` is not regularised, as in the authors' code;
the embedding term is ``log1p(sigma(E))``. With every ``sprint_*_weight`` at 0 it trains exactly like SASRecPP.
With ``attention_impl: fused`` the attention never stores the probabilities and provides their column sums (over
valid queries, after dropout) itself, through each attention's ``column_sums`` module.
"""

from recbole_sprint.model.sequential_recommender.sasrecpp import SASRecPP
from recbole_sprint.model.sprint import SPRINT, SprintBlock


class SASRecPPSPRINT(SPRINT, SASRecPP):
    r"""SASRec++ + SPRINT. Causal attention; query and key masks are the non-padding positions."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.init_sprint(config)

    def sprint_blocks(self):
        fused = self.attention_impl == "fused"
        return [
            SprintBlock(
                # dense: the softmax probabilities after dropout, applied to V, read by a hook on attn_dropout;
                # fused: the kernel's column sums of that matrix, read by a hook on attention.column_sums
                probs_module=None if fused else layer.attention.attn_dropout,
                column_sums_module=layer.attention.column_sums if fused else None,
                value_module=layer.attention.v_proj,
                output_module=layer.attention.o_proj,
                n_heads=layer.attention.n_heads,
                ffn_in_module=layer.feed_forward.up_proj,  # W_1 = W_up; W_gate is left out
                ffn_out_module=layer.feed_forward.down_proj,  # W_2 = W_down
            )
            for layer in self.layers
        ]
