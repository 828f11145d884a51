r"""HSTUSPRINT
################################################

Reference:
    Jiaqi Zhai et al. "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for
    Generative Recommendations." ICML 2024.

    Yang, Pan et al. "The Pitfall of Scaling Up: Uncovering and Mitigating Popularity Bias Amplification in
    Scaling Transformer-based Recommenders." KDD 2026.

:class:`~recbole_sprint.model.sequential_recommender.hstu.HSTU` with the SPRINT regulariser added to its
training loss (spec sprint.md section 1.4). HSTU's attention ``P = SiLU(QK^T + rab) / n`` (causal) is signed
and not row-normalised: the column sums are plain signed sums of the matrix applied to ``V``, and the
square-root argument of the attention term is clamped (``attention_block_term``), so a non-positive soft
maximum gives a flat term instead of NaN. ``W_V`` is the V row block of the fused U/V/Q/K projection;
``W_O`` is the output projection; U/Q/K and the (affine-free) LayerNorms are not regularised. The original HSTU
has no FFN, so ``sprint_ffn_weight`` is 0 by default (``HSTUSPRINT.yaml``); with ``hstu_ffn: True`` (the paper's
HSTU variant) the FFN term is ``log1p(sigma(W_up) sigma(W_down))`` per block, the gate left out, as on SASRec++.
"""

from recbole_sprint.model.sequential_recommender.hstu import HSTU
from recbole_sprint.model.sprint import SPRINT, SprintBlock


class HSTUSPRINT(SPRINT, HSTU):
    r"""HSTU + SPRINT. Causal attention; query and key masks are the non-padding positions."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.init_sprint(config)

    def sprint_blocks(self):
        return [self._sprint_block(layer) for layer in self.layers]

    @staticmethod
    def _sprint_block(layer):
        ffn = layer.feed_forward  # None: the original HSTU (no FFN term)
        return SprintBlock(
            probs_module=layer.attn_dropout,  # output: SiLU attention (causal, / n) after dropout, applied to V
            value_module=layer.uvqk,
            value_rows=layer.value_rows,
            output_module=layer.output,
            n_heads=layer.n_heads,
            ffn_in_module=None if ffn is None else ffn.up_proj,  # W_1 = W_up (W_gate is left out)
            ffn_out_module=None if ffn is None else ffn.down_proj,  # W_2 = W_down
        )
