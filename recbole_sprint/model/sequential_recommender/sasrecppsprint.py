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
The attention provides the column sums (over valid queries, after dropout) itself, through each attention's
``column_sums`` module: ``attention_impl: dense`` from its probabilities, with ``P V`` in one autograd node whose
backward adds the sums' gradient in the same product as ``dO V^T``; ``fused`` from the kernels, which never store the
probabilities.
"""

from recbole_sprint.model.sequential_recommender.sasrecpp import SASRecPP
from recbole_sprint.model.sprint import SPRINT, SprintBlock


class SASRecPPSPRINT(SPRINT, SASRecPP):
    r"""SASRec++ + SPRINT. Causal attention; query and key masks are the non-padding positions."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.init_sprint(config)

    def sprint_blocks(self):
        return [
            SprintBlock(
                # the column sums of the softmax probabilities after dropout (the matrix applied to V), over the
                # valid queries, computed by the attention itself (dense: with P V in one autograd node; fused: by
                # the kernels) and read by a hook on attention.column_sums
                probs_module=None,
                column_sums_module=layer.attention.column_sums,
                value_module=layer.attention.v_proj,
                output_module=layer.attention.o_proj,
                n_heads=layer.attention.n_heads,
                ffn_in_module=layer.feed_forward.up_proj,  # W_1 = W_up; W_gate is left out
                ffn_out_module=layer.feed_forward.down_proj,  # W_2 = W_down
            )
            for layer in self.layers
        ]
