r"""recbole_sprint.model.full_sequence
##################################

The model side of ``train_mode: full_sequence`` (the data side is
:class:`~recbole_sprint.data.dataset.FullSequenceDataset`): one sample per user, a next-item loss at every
position (SASRec's original protocol, HSTU's, the SPRINT paper's; spec sprint.md §3.2, §4.4).

Adopting it in a model (the protocol)
-------------------------------------
Put the :class:`FullSequence` mixin in the bases right before the RecBole backbone (after ``SPRINT``)::

    class XSPRINT(SPRINT, FullSequence, X):
        def forward_all_positions(self, interaction):              # -> [B, n, d]
            ...  # the backbone's output at EVERY position, computed by calling self.forward(...)
        def item_representations(self):                           # -> [I, d]
            return self.item_embedding.weight

* ``forward_all_positions`` must run through ``self.forward`` so that wrappers of ``forward`` (SPRINT's
  attention hook and masks) see the all-position pass. Output position ``t`` predicts the item after input
  position ``t`` (causal models). For SASRec, whose ``forward`` gathers the last position, see
  :class:`~recbole_sprint.model.sequential_recommender.sasrecsprint.SASRecSPRINT`: it switches the gather off;
  a backbone whose ``forward`` already returns ``[B, n, d]`` simply returns ``self.forward(...)``.
  It takes the training batch, so a backbone can read any sequence field it needs (HSTU: ``timestamp_list``).
* ``item_representations`` is the table that scores items (row ``i`` = item ``i``, row 0 padding), the same
  one ``full_sort_predict`` uses.
* ``full_sequence_score_scale`` (default 1): factor on the scores of the ``CE`` and ``BCE`` losses. HSTU scores
  by cosine similarity and trains on ``cos / sampled_softmax_temperature`` for every loss, so it returns
  ``1 / temperature`` (``sampled_softmax`` always divides by the temperature itself).
* ``graph_fields()`` (optional): the batch fields ``forward_all_positions`` reads, which makes
  ``backbone_compile: cuda_graph`` available (:mod:`recbole_sprint.model.graphs`; default ``None``: not available).
* ``prefix_loss_types`` (class attribute) lists the ``loss_type`` values the backbone supports in ``prefix``
  mode (default RecBole's ``CE``, ``BPR``); ``full_sequence`` mode supports
  :data:`~recbole_sprint.model.losses.LOSS_TYPES`.

Config keys (defaults in ``properties/model/FullSequence.yaml``): ``train_mode`` (``prefix`` | ``full_sequence``),
``loss_type``, ``num_negatives``, ``sampled_softmax_temperature``, ``backbone_compile`` (``none`` | ``cuda_graph``:
the training forward and backward of the backbone replayed from CUDA graphs, :mod:`recbole_sprint.model.graphs`).
In ``prefix`` mode the model is its backbone, unchanged. Evaluation (``predict``/``full_sort_predict``) is the
backbone's in both modes.
"""

import contextlib

from recbole_sprint.data.dataset import check_train_mode, target_list_field
from recbole_sprint.model.graphs import BackboneGraphs, check_backbone_compile
from recbole_sprint.model.losses import LOSS_TYPES, FullSequenceLoss, check_loss_type


@contextlib.contextmanager
def backbone_loss_type(config, loss_type):
    """Show the backbone's ``__init__`` a ``loss_type`` it accepts (RecBole's SASRec/BERT4Rec raise for any
    value but ``CE``/``BPR``); its own loss module is then unused. The config is restored afterwards."""
    original = config["loss_type"]
    config["loss_type"] = loss_type
    try:
        yield
    finally:
        config["loss_type"] = original


class FullSequence:
    """Mixin adding ``train_mode: full_sequence`` to a RecBole sequential model (see the module docstring)."""

    prefix_loss_types = ("CE", "BPR")
    full_sequence_score_scale = 1.0

    def __init__(self, config, dataset):
        train_mode = check_train_mode(config)
        loss_type = config["loss_type"]
        if train_mode == "prefix":
            if loss_type not in self.prefix_loss_types:
                raise ValueError(
                    f"loss_type must be one of {list(self.prefix_loss_types)} with train_mode 'prefix' "
                    f"(train_mode 'full_sequence' allows {list(LOSS_TYPES)}), got {loss_type!r}"
                )
            super().__init__(config, dataset)
        else:
            check_loss_type(loss_type)
            with backbone_loss_type(config, "CE"):
                super().__init__(config, dataset)
            self.loss_type = loss_type
            self.full_sequence_loss = FullSequenceLoss(config, self.n_items)
        self.train_mode = train_mode
        self.ITEM_TARGET_SEQ = target_list_field(config)
        self.backbone_compile = check_backbone_compile(config, self)
        self._backbone_graphs = BackboneGraphs(self) if self.backbone_compile == "cuda_graph" else None

    # -- to implement -------------------------------------------------------------------------------
    def forward_all_positions(self, interaction):
        """``[B, n, d]``: the backbone's output at every position of the batch's sequences (via ``self.forward``)."""
        raise NotImplementedError

    def item_representations(self):
        """``[I, d]``: the item table that scores items."""
        raise NotImplementedError

    def graph_fields(self):
        """The batch fields ``forward_all_positions`` reads, or ``None``: ``backbone_compile: cuda_graph`` is then not
        available (:mod:`recbole_sprint.model.graphs`)."""
        return None

    # -- backbone_compile: cuda_graph (a SPRINT model overrides these) ------------------------------------
    def backbone_graph_key(self):
        """What, besides the fields' shapes, selects the recorded graph of a step."""
        return None

    def backbone_graph_inputs(self):
        """Tensors the recorded forward reads besides the batch fields (graph inputs, passed to
        :meth:`backbone_graph_loss`)."""
        return ()

    def backbone_graph_outputs(self):
        """Tensors the training forward made for others besides the loss (recorded as graph outputs)."""
        return ()

    def backbone_graph_loss(self, loss, inputs):
        """``(loss, extras)`` of the recorded forward from its loss and :meth:`backbone_graph_inputs`: by default the
        loss and :meth:`backbone_graph_outputs`."""
        return loss, self.backbone_graph_outputs()

    def restore_backbone_graph_outputs(self, fields, extras):
        """After a replay: hand ``extras`` (the replayed :meth:`backbone_graph_outputs`) to whoever reads them;
        ``fields``: the replay's inputs by name."""

    # -- provided -----------------------------------------------------------------------------------
    def calculate_loss(self, interaction):
        # A backbone that is itself a FullSequence subclass (HSTU) overrides this and dispatches on train_mode.
        if self.train_mode == "prefix":
            return super().calculate_loss(interaction)
        return self.calculate_full_sequence_loss(interaction)

    def calculate_full_sequence_loss(self, interaction):
        if self.ITEM_TARGET_SEQ not in interaction:
            raise ValueError(
                f"train_mode 'full_sequence' needs training batches with '{self.ITEM_TARGET_SEQ}': build the "
                "dataset with recbole_sprint.data.create_dataset (a FullSequenceDataset)"
            )
        if self._backbone_graphs is not None:  # backbone_compile: cuda_graph
            return self._backbone_graphs.loss(interaction)
        return self.full_sequence_loss_of(interaction)

    def full_sequence_loss_of(self, interaction, every_position=False):
        """The next-item loss of the batch; ``every_position``: the loss's form without boolean indexing
        (``FullSequenceLoss.forward``), which a CUDA graph can record."""
        item_seq = interaction[self.ITEM_SEQ]  # [B, n]
        targets = interaction[self.ITEM_TARGET_SEQ]  # [B, n], 0 = padding
        hidden = self.forward_all_positions(interaction)  # [B, n, d]
        if self.loss_type != "sampled_softmax" and self.full_sequence_score_scale != 1:
            hidden = hidden * self.full_sequence_score_scale
        return self.full_sequence_loss(hidden, item_seq, targets, self.item_representations(), every_position)


class ClozeFullSequence:
    """Marker mixin: the model accepts ``train_mode: full_sequence`` rows and trains on them with its own loss.

    For a cloze model (BERT4Rec) the full-sequence row *is* its original protocol (Sun et al. 2019: one
    sequence per user, random positions masked and predicted): RecBole's ``mask_itemseq`` transform masks the
    row's ``item_id_list`` as it masks a prefix sample, and ``calculate_loss`` is the backbone's. The
    next-item losses of :class:`FullSequence` (``BCE``, ``sampled_softmax``) do not apply: ``loss_type`` stays
    the backbone's (``CE`` or ``BPR``).
    """

    def __init__(self, config, dataset):
        train_mode = check_train_mode(config)
        if train_mode == "full_sequence" and config["loss_type"] not in ("CE", "BPR"):
            raise ValueError(
                f"loss_type must be one of ['CE', 'BPR'] for {type(self).__name__} (a cloze model trains on "
                f"full-sequence rows with its own masked-item loss), got {config['loss_type']!r}"
            )
        super().__init__(config, dataset)
        self.train_mode = train_mode

