r"""SASRecSPRINT
################################################

Reference:
    Wang-Cheng Kang and Julian McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018.

    Yang, Pan et al. "The Pitfall of Scaling Up: Uncovering and Mitigating Popularity Bias Amplification in
    Scaling Transformer-based Recommenders." KDD 2026.

RecBole's :class:`~recbole.model.sequential_recommender.sasrec.SASRec` with the SPRINT regulariser added to its
training loss; the backbone, its losses (CE/BPR), samplers and evaluation are SASRec's, unchanged.
"""

from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_sprint.model.sprint import SPRINT, recbole_transformer_blocks


class SASRecSPRINT(SPRINT, SASRec):
    r"""SASRec + SPRINT. Causal attention: a key column gathers mass only from valid queries at or after it."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.init_sprint(config)

    def sprint_blocks(self):
        return recbole_transformer_blocks(self.trm_encoder)
