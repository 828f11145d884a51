"""Item popularity and the long-tail item set used by the plugin's popularity-bias metrics.

Definitions (``../shared/spec/anchors.md`` section 4, ``sprint.md`` section 3.4):

* popularity phi(i) = number of interactions of item ``i``; ``popularity_source: train`` counts the
  training split, ``popularity_source: all`` counts every interaction (train + valid + test; the SPRINT
  paper's code). The padding item 0 always has popularity 0 and is never an item.
* tail set T = the ``floor(tail_ratio * n)`` least popular of the ``n`` non-padding items, ties broken by
  ascending item id (so ``tail_ratio: 0.8`` makes the 20% most popular items the head). Items that never
  occur in the counted interactions have popularity 0 and are therefore tail items first.

For a RecBole ``SequentialDataset`` the interaction table holds one row per *prefix* (``history -> target``),
so each user's first item only occurs inside ``item_id_list``. :func:`item_interaction_counts` counts the
targets plus each user's first item (from the user's first prefix row), i.e. every interaction of the split
exactly once.
(RecBole's own ``data.count_items`` / ``AveragePopularity`` count targets only and miss each user's first
item; that is why ``ARP`` and RecBole's ``AveragePopularity`` differ slightly on sequential data.)
"""

import math

import torch

POPULARITY_SOURCES = ("train", "all")

# attribute that recbole_sprint.data.data_preparation sets on the training dataset (popularity_source: all)
FULL_POPULARITY_ATTRIBUTE = "item_popularity_all"
# attribute of a training split whose rows are not one per interaction or prefix (FullSequenceDataset):
# the counts of the training interactions it was built from (popularity_source: train)
TRAIN_POPULARITY_ATTRIBUTE = "item_popularity_train"


def check_tail_ratio(tail_ratio):
    """``tail_ratio`` as a float in the open interval (0, 1); anything else raises ``ValueError``."""
    if isinstance(tail_ratio, bool) or not isinstance(tail_ratio, (int, float)) or not 0 < tail_ratio < 1:
        raise ValueError(
            f"tail_ratio must be a number in the open interval (0, 1) (the share of least popular items that "
            f"form the long tail; 0.8 makes the top 20% the head), got {tail_ratio!r}"
        )
    return float(tail_ratio)


def check_popularity_source(popularity_source):
    """``popularity_source`` if it is one of :data:`POPULARITY_SOURCES`, else ``ValueError``."""
    if popularity_source not in POPULARITY_SOURCES:
        raise ValueError(
            f"popularity_source must be one of {', '.join(POPULARITY_SOURCES)} ('train': interactions of the "
            f"training split; 'all': train + valid + test interactions), got {popularity_source!r}"
        )
    return popularity_source


def item_interaction_counts(dataset):
    """Number of interactions of every item id in ``dataset.inter_feat``: LongTensor [num_items], entry 0 = 0.

    Works for RecBole's plain datasets (one row per interaction) and for augmented ``SequentialDataset``s
    (one row per prefix: targets are counted, plus each user's first item, from the user's first prefix row).
    """
    iid_field = dataset.iid_field
    num_items = dataset.num(iid_field)
    inter_feat = dataset.inter_feat
    counts = torch.bincount(inter_feat[iid_field].long().flatten(), minlength=num_items)  # [num_items]
    list_field = getattr(dataset, f"{iid_field}_list_field", None)
    length_field = getattr(dataset, "item_list_length_field", None)
    if list_field in inter_feat and length_field in inter_feat:
        first_prefix = _first_prefix_rows(dataset)  # [rows] each user's first training sample
        first_items = inter_feat[list_field][first_prefix, 0].long()  # [users]
        counts += torch.bincount(first_items, minlength=num_items)
    counts[0] = 0  # padding
    return counts


def _first_prefix_rows(dataset):
    """Boolean mask [rows] of each user's first prefix row (history of length 1, the user's first item).

    With ``MAX_ITEM_LIST_LENGTH`` >= 2 that is the only length-1 row of a user. With ``MAX_ITEM_LIST_LENGTH: 1``
    every history has length 1, so among them the user's first row is taken (RecBole's ``SequentialDataset``
    writes a user's prefixes in time order, and its splits keep that order)."""
    inter_feat = dataset.inter_feat
    length_one = inter_feat[dataset.item_list_length_field] == 1  # [rows]
    uid_field = getattr(dataset, "uid_field", None)
    if uid_field is None or uid_field not in inter_feat:
        return length_one
    rows = torch.nonzero(length_one).flatten()  # [n] row indices, ascending
    users = inter_feat[uid_field][rows].long()  # [n]
    order = torch.sort(users, stable=True).indices  # same user together, ascending rows within a user
    sorted_users = users[order]
    first = torch.ones_like(sorted_users, dtype=torch.bool)
    first[1:] = sorted_users[1:] != sorted_users[:-1]  # the first length-1 row of each user
    mask = torch.zeros_like(length_one)
    mask[rows[order[first]]] = True
    return mask


def attach_full_popularity(train_dataset, full_dataset):
    """Store the all-interaction counts of ``full_dataset`` on the training dataset (``popularity_source: all``).

    Called by :func:`recbole_sprint.data.data_preparation` after RecBole has built (and, for sequential
    data, augmented) ``full_dataset``; the evaluator's collector only ever sees the training dataloader.
    """
    setattr(train_dataset, FULL_POPULARITY_ATTRIBUTE, item_interaction_counts(full_dataset))


def item_popularity(train_dataset, popularity_source):
    """Popularity vector [num_items] (LongTensor, padding entry 0) for ``popularity_source``."""
    check_popularity_source(popularity_source)
    if popularity_source == "train":
        counts = getattr(train_dataset, TRAIN_POPULARITY_ATTRIBUTE, None)
        return counts if counts is not None else item_interaction_counts(train_dataset)
    counts = getattr(train_dataset, FULL_POPULARITY_ATTRIBUTE, None)
    if counts is None:
        raise ValueError(
            "popularity_source: all needs the counts of every interaction, which "
            "recbole_sprint.data.data_preparation attaches to the training dataset; these dataloaders were built "
            "by another function (e.g. recbole.data.data_preparation). Use recbole_sprint's data_preparation, "
            "or popularity_source: train"
        )
    return counts


def tail_size(num_real_items, tail_ratio):
    """``floor(tail_ratio * num_real_items)`` (with a 1e-9 guard against 0.29 * 100 = 28.999...)."""
    return int(math.floor(tail_ratio * num_real_items + 1e-9))


def tail_mask(popularity, tail_ratio):
    """Boolean mask [num_items] of the tail set T (padding entry 0 always False), on ``popularity``'s device.

    Args:
        popularity: [num_items] counts; entry 0 is the padding item.
        tail_ratio: share of the non-padding items in T, in (0, 1).

    Raises:
        ValueError: ``tail_ratio`` keeps no item (``floor(tail_ratio * n) == 0``).
    """
    num_real_items = popularity.numel() - 1
    n_tail = tail_size(num_real_items, tail_ratio)
    if n_tail == 0:
        raise ValueError(
            f"tail_ratio={tail_ratio} gives an empty tail set for {num_real_items} items "
            f"(floor(tail_ratio * n) = 0); use tail_ratio >= 1/{num_real_items}"
        )
    # stable ascending sort of items 1..n: equal counts keep ascending id order
    order = torch.sort(popularity[1:], stable=True).indices + 1  # [n] item ids, least popular first
    mask = torch.zeros(popularity.numel(), dtype=torch.bool, device=popularity.device)
    mask[order[:n_tail]] = True
    return mask
