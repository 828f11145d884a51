r"""recbole_sprint.evaluator.history
################################

The user's observed history for full-ranking evaluation of sequential models, and the masking that removes it
from the ranking (``eval_exclude_history``).

RecBole's full-sort evaluation of a *general* model ranks only items the user has not interacted with in the
earlier splits (``history_index``), but for a *sequential* model it masks nothing but the padding item
(``FullSortEvalDataLoader``: ``history_index`` is ``None``). On data without repeat consumption (both shared
datasets, every dataset of the SPRINT paper) an already-consumed item can never be a hit, yet a model trained
with negatives that never come from the user's history learns to rank those items first: the top-1 slot is
then a guaranteed miss and the long-tail metrics describe the user's own past, not the recommendations.

Definition (the one RecBole uses for general models, at the level of splits): at validation the history of a
user is every item of its **training** split; at test, every item of its training and validation splits. For a
sequential dataset that is the whole prefix before the evaluated target, including the items older than
``MAX_ITEM_LIST_LENGTH`` that the input sequence no longer shows. The target itself is never masked: on data
with repeats, a target that also occurs earlier in the history stays rankable (masking it would make the hit
impossible).

How it is stored: RecBole's sequential dataset keeps one row per interaction after a user's first, ordered by
time within each user (``data_augmentation``, then a stable sort by time), and the splits take consecutive
rows of each user. The user's item sequence is the first row's input item followed by the targets of its rows;
the history of split ``k`` is the first ``1 + (rows of the user in the splits before k)`` items of it. One flat
item array for all users plus a start and a length per user (CSR): a batch's history is gathered as
``(row, item)`` index pairs, never as a dense ``|U| x |I|`` matrix.
"""

import numpy as np
import torch

__all__ = ["UserHistory", "split_histories", "history_pairs", "mask_history", "history_hits", "EXCLUDE_HISTORY_KEY"]

EXCLUDE_HISTORY_KEY = "eval_exclude_history"


def check_exclude_history(config):
    """The validated ``eval_exclude_history`` (``True``/``False``); ``ValueError`` naming the allowed values."""
    value = config[EXCLUDE_HISTORY_KEY]
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"{EXCLUDE_HISTORY_KEY} must be True or False, got {value!r}")
    return value


class UserHistory:
    """The items each user consumed before one evaluation split (CSR over user ids).

    Args:
        items: ``[N]`` item ids of all users, each user's items consecutive and in time order.
        start: ``[num_users]`` offset of the user's first item in ``items``.
        length: ``[num_users]`` number of history items of the user (0 for users without history).
    """

    def __init__(self, items, start, length):
        self.items = torch.as_tensor(items, dtype=torch.long)
        self.start = torch.as_tensor(start, dtype=torch.long)
        self.length = torch.as_tensor(length, dtype=torch.long)

    def to(self, device):
        if self.items.device != torch.device(device):
            self.items, self.start, self.length = (t.to(device) for t in (self.items, self.start, self.length))
        return self

    def of_user(self, user):
        """The history items of one user id (a 1-D tensor; for tests and inspection)."""
        start, length = int(self.start[user]), int(self.length[user])
        return self.items[start : start + length]


def _user_sequences(uids, targets, first_inputs):
    """Flat per-user item sequences from RecBole's sequential rows.

    Args:
        uids, targets: ``[R]`` numpy arrays of the rows (any user order; within a user in time order).
        first_inputs: ``[R]`` the first input item of each row (that of a user's first row is its first item).

    Returns:
        ``(items [R + U], start [max uid + 1], rows [max uid + 1])``: the items of each user (first item, then
        the rows' targets), the user's offset, and its number of rows.
    """
    order = np.argsort(uids, kind="stable")  # group by user, keep the time order within a user
    uids, targets, first_inputs = uids[order], targets[order], first_inputs[order]
    first_row = np.ones(len(uids), dtype=bool)
    first_row[1:] = uids[1:] != uids[:-1]
    row_starts = np.flatnonzero(first_row)  # [U]
    items = np.insert(targets, row_starts, first_inputs[row_starts])  # each user: first item, then its targets
    n_users = int(uids.max()) + 1 if len(uids) else 0
    start = np.zeros(n_users, dtype=np.int64)
    rows = np.zeros(n_users, dtype=np.int64)
    users = uids[row_starts]
    start[users] = row_starts + np.arange(len(row_starts))  # shifted by the first items inserted before
    rows[users] = np.diff(np.append(row_starts, len(uids)))
    return items, start, rows


def _rows_per_user(dataset, n_users):
    uids = dataset.inter_feat[dataset.uid_field].numpy()
    return np.bincount(uids, minlength=n_users)[:n_users]


def split_histories(dataset, eval_datasets):
    """One :class:`UserHistory` per evaluation split.

    Args:
        dataset: the whole sequential dataset that RecBole split (``data_preparation``'s input, after ``build``):
            its rows are every (prefix, target) sample of every user.
        eval_datasets: the later splits in order, e.g. ``[valid, test]`` (an empty split may be ``None``).

    Returns:
        list of :class:`UserHistory` (``None`` for a ``None`` split): split ``k``'s history is every item of the
        user in the splits before it.
    """
    inter = dataset.inter_feat
    uids = inter[dataset.uid_field].numpy()
    targets = inter[dataset.iid_field].numpy()
    first_inputs = inter[dataset.item_id_list_field][:, 0].numpy()
    items, start, rows = _user_sequences(uids, targets, first_inputs)
    n_users = len(start)
    later = np.zeros(n_users, dtype=np.int64)  # rows of the user in this split and every later one
    histories = []
    for split in reversed(eval_datasets):
        if split is None:
            histories.append(None)
            continue
        later = later + _rows_per_user(split, n_users)
        length = np.where(rows > 0, 1 + rows - later, 0)  # first item + the targets of the earlier rows
        histories.append(UserHistory(items, start, np.clip(length, 0, None)))
    return histories[::-1]


def history_pairs(history, users, targets=None):
    """``(rows, items)``: one index pair per history item of each evaluation row, without the row's target.

    Args:
        history: :class:`UserHistory` on the device of ``users``.
        users: ``[B]`` user ids of the batch's rows.
        targets: ``[B]`` the row's target item (never masked), or ``None``.

    Returns:
        two ``[P]`` long tensors, P = the batch's history items (targets left out).
    """
    lengths = history.length[users]  # [B]
    rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)  # [P]
    offsets = torch.arange(int(lengths.sum()), device=users.device)  # [P]
    offsets = offsets - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)  # position in the user
    items = history.items[history.start[users][rows] + offsets]  # [P]
    if targets is not None:
        keep = items != targets[rows]
        rows, items = rows[keep], items[keep]
    return rows, items


def history_hits(scores, rows, items, k):
    """``[B, k]`` bool: whether each of the top-``k`` items of ``scores [B, I]`` is one of the row's history
    ``(rows, items)`` pairs (the ranking as scored, before any masking)."""
    topk = torch.topk(scores, k, dim=-1).indices  # [B, k]
    in_history = torch.zeros_like(scores, dtype=torch.bool)  # [B, I]: this batch only
    in_history[rows, items] = True
    return in_history.gather(1, topk)


def mask_history(scores, rows, items):
    """Set the score of every history pair to ``-inf`` (in place) and return ``scores``."""
    scores[rows, items] = -torch.inf
    return scores
