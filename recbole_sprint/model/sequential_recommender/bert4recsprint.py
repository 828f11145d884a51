r"""BERT4RecSPRINT
################################################

Reference:
    Fei Sun et al. "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from
    Transformer." CIKM 2019.

    Yang, Pan et al. "The Pitfall of Scaling Up: Uncovering and Mitigating Popularity Bias Amplification in
    Scaling Transformer-based Recommenders." KDD 2026.

RecBole's :class:`~recbole.model.sequential_recommender.bert4rec.BERT4Rec` with the SPRINT regulariser added to
its training loss (spec sprint.md section 6). The attention is bidirectional, so a key column gathers mass from
every valid query: keep-mask = (query valid) and (key valid), no causal condition. Queries are the non-padding
positions, ``[MASK]`` tokens included (their outputs are the predictions). Keys are the non-padding positions
minus the ``[MASK]`` tokens when ``sprint_exclude_mask_keys`` is True (default): a ``[MASK]`` key is one shared
learned embedding, not an item. The backbone, its cloze training, losses and evaluation are BERT4Rec's.

``train_mode: full_sequence`` (:class:`~recbole_sprint.model.full_sequence.ClozeFullSequence`) trains the same
cloze loss on one row per user (BERT4Rec's original protocol) instead of one row per prefix.
"""

from recbole.model.sequential_recommender.bert4rec import BERT4Rec

from recbole_sprint.model.full_sequence import ClozeFullSequence
from recbole_sprint.model.sprint import SPRINT, recbole_transformer_blocks


class BERT4RecSPRINT(SPRINT, ClozeFullSequence, BERT4Rec):
    r"""BERT4Rec + SPRINT (bidirectional attention)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        exclude = config["sprint_exclude_mask_keys"]
        if not isinstance(exclude, bool):
            raise ValueError(f"sprint_exclude_mask_keys must be True or False, got {exclude!r}")
        self.sprint_exclude_mask_keys = exclude
        self.init_sprint(config)

    def sprint_blocks(self):
        return recbole_transformer_blocks(self.trm_encoder)

    def sprint_masks(self, item_seq):
        """``(query_mask, key_mask)`` ``[B, n]``: non-padding queries; non-padding (non-``[MASK]``) keys."""
        query_mask = item_seq != 0
        key_mask = query_mask & (item_seq != self.mask_token) if self.sprint_exclude_mask_keys else query_mask
        return query_mask, key_mask
