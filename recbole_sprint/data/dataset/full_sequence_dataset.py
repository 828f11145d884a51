r"""recbole_sprint.data.dataset.full_sequence_dataset
################################################

``train_mode: full_sequence``: one training sample per user, a next-item target at every position.

RecBole's :class:`~recbole.data.dataset.SequentialDataset` turns every interaction after a user's first into
its own *prefix* sample (``data_augmentation``), sorts them by time and splits them leave-one-out per user:
the last sample of a user is the test sample, the one before it the validation sample, the rest are training
samples. A model then computes its loss at the last position of each prefix only.

:class:`FullSequenceDataset` keeps all of that (valid and test splits are RecBole's, unchanged) and only
replaces the *training* split by one row per user: the user's **last** training prefix sample, i.e. the
training part of the leave-one-out split truncated to the most recent ``MAX_ITEM_LIST_LENGTH`` inputs, plus a
target sequence. For a user with items :math:`x_0 \dots x_{m-1}` (spec sprint.md §3.2):

* input  ``item_id_list``          = :math:`x_s \dots x_{m-4}` (right-padded with 0, as RecBole pads);
* target ``item_id_target_list``   = :math:`x_{s+1} \dots x_{m-3}` (0 where the input is padding);
* ``item_length`` = number of valid positions; ``item_id`` = :math:`x_{m-3}`, the last target.

Validation (:math:`x_{m-2}`) and test (:math:`x_{m-1}`) targets are never in a training row. Users whose
training split is empty (fewer than 4 interactions) have no training row, as in RecBole. Other
``*_list`` fields (e.g. ``timestamp_list``) keep the values aligned with the input positions.

Item popularity of the training split is that of RecBole's prefix split, whatever the row format: the
full-sequence split keeps the prefix split's ``item_counter`` (used by RecBole's ``AveragePopularity`` /
``TailPercentage``) and its per-item interaction counts (``TRAIN_POPULARITY_ATTRIBUTE``, used by the plugin's
long-tail metrics with ``popularity_source: train``), so popularity metrics do not depend on ``train_mode``.
"""

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.utils.enum_type import FeatureSource, FeatureType

from recbole_sprint.data.dataset.exact_time_dataset import ExactTimeMixin
from recbole_sprint.evaluator.popularity import TRAIN_POPULARITY_ATTRIBUTE, item_interaction_counts

TRAIN_MODES = ("prefix", "full_sequence")
TARGET_SUFFIX = "_target"


def check_train_mode(config):
    """The validated ``train_mode`` of ``config`` (``None``, i.e. unset, means RecBole's ``prefix``)."""
    mode = config["train_mode"]
    if mode is None:
        return "prefix"
    if mode not in TRAIN_MODES:
        raise ValueError(f"train_mode must be one of {list(TRAIN_MODES)}, got {mode!r}")
    return mode


def target_list_field(config):
    """Name of the target-sequence field, e.g. ``item_id_target_list``."""
    return config["ITEM_ID_FIELD"] + TARGET_SUFFIX + config["LIST_SUFFIX"]


def last_row_per_user(user_ids):
    """Index of each user's last row (rows are in RecBole's split order). ``user_ids``: ``[N]`` numpy."""
    reversed_ids = user_ids[::-1]
    _, first_in_reversed = np.unique(reversed_ids, return_index=True)
    return np.sort(len(user_ids) - 1 - first_in_reversed)


def shifted_targets(item_seq, item_seq_len, last_target):
    """Target sequence of right-padded inputs: ``target[t] = item_seq[t + 1]``, ``target[len - 1] = last_target``.

    Args:
        item_seq: ``[U, n]`` right-padded item ids (0 = padding).
        item_seq_len: ``[U]`` number of valid positions (>= 1).
        last_target: ``[U]`` the item that follows the last input.

    Returns:
        ``[U, n]``, 0 at padding positions.
    """
    targets = torch.zeros_like(item_seq)
    targets[:, :-1] = item_seq[:, 1:]  # right padding: position len-1 gets a 0 here, overwritten below
    targets[torch.arange(item_seq.size(0)), item_seq_len - 1] = last_target
    return targets


class FullSequenceDataset(ExactTimeMixin, SequentialDataset):
    """RecBole's :class:`SequentialDataset` whose training split has one full-sequence row per user (and float64
    timestamps: :mod:`~recbole_sprint.data.dataset.exact_time_dataset`)."""

    @property
    def item_counter(self):
        """RecBole's ``Counter`` of item ids; on the full-sequence split, that of the prefix split it replaced."""
        prefix_counter = getattr(self, "_prefix_item_counter", None)
        return prefix_counter if prefix_counter is not None else super().item_counter

    def build(self):
        train, valid, test = super().build()
        return [self.full_sequence_split(train), valid, test]

    def full_sequence_split(self, train):
        """One row per user of ``train``: its last (longest) prefix sample plus the shifted target sequence."""
        if len(train) == 0:
            return train
        rows = last_row_per_user(train.inter_feat[self.uid_field].numpy())
        inter = train.inter_feat[torch.from_numpy(rows)]
        item_seq = inter[self.item_id_list_field]  # [U, n]
        target_field = target_list_field(self.config)
        inter.update(
            type(inter)(
                {target_field: shifted_targets(item_seq, inter[self.item_list_length_field], inter[self.iid_field])}
            )
        )
        full = train.copy(inter)
        # Private copies of the field-property tables, so that valid/test keep RecBole's exact fields.
        for table in ("field2type", "field2source", "field2seqlen"):
            setattr(full, table, dict(getattr(full, table)))
        full.set_field_property(target_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION, self.max_item_list_len)
        full._prefix_item_counter = train.item_counter  # popularity as in prefix mode (module docstring)
        setattr(full, TRAIN_POPULARITY_ATTRIBUTE, item_interaction_counts(train))
        return full
