r"""SASRecSPRINT
################################################

Reference:
    Wang-Cheng Kang and Julian McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018.

    Yang, Pan et al. "The Pitfall of Scaling Up: Uncovering and Mitigating Popularity Bias Amplification in
    Scaling Transformer-based Recommenders." KDD 2026.

RecBole's :class:`~recbole.model.sequential_recommender.sasrec.SASRec` with the SPRINT regulariser added to its
training loss. ``train_mode: prefix`` (default): the backbone, its losses (CE/BPR), samplers and evaluation are
SASRec's, unchanged. ``train_mode: full_sequence``: one sample per user and a next-item loss (CE, BCE or
sampled_softmax) at every position, as in the original SASRec and the SPRINT paper
(:mod:`recbole_sprint.model.full_sequence`); evaluation unchanged.
"""

from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_sprint.model.full_sequence import FullSequence
from recbole_sprint.model.sprint import SPRINT, recbole_transformer_blocks


class SASRecSPRINT(SPRINT, FullSequence, SASRec):
    r"""SASRec + SPRINT. Causal attention: a key column gathers mass only from valid queries at or after it."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._gather_last = True  # False only inside forward_all_positions
        self.init_sprint(config)

    def sprint_blocks(self):
        return recbole_transformer_blocks(self.trm_encoder)

    def gather_indexes(self, output, gather_index):
        # SASRec.forward ends with gather_indexes(output, item_seq_len - 1); forward_all_positions skips it.
        if not self._gather_last:
            return output  # [B, n, d]
        return super().gather_indexes(output, gather_index)  # [B, d]

    def forward_all_positions(self, interaction):
        """SASRec's transformer output at every position, ``[B, n, d]`` (through ``forward``, so SPRINT sees it)."""
        self._gather_last = False
        try:
            return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        finally:
            self._gather_last = True

    def item_representations(self):
        return self.item_embedding.weight  # [I, d], as SASRec's full_sort_predict

    def graph_fields(self):
        return self.ITEM_SEQ, self.ITEM_SEQ_LEN  # what forward_all_positions reads (backbone_compile: cuda_graph)
