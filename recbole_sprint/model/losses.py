r"""recbole_sprint.model.losses
###########################

Next-item losses at every position of a sequence (``train_mode: full_sequence``), shared by every plugin model.

All functions take

* ``hidden``  ``[B, n, d]``: the model's output at every position (position ``t`` predicts ``targets[:, t]``);
* ``targets`` ``[B, n]``: target item ids, **0 = padding** (no loss there);
* ``items``   ``[I, d]``: the item representation table, row ``i`` scores item ``i`` (row 0 is the padding item);

and return a scalar averaged over valid positions. The losses (spec sprint.md §4.4):

``CE``
    Full softmax over all ``I`` rows (as RecBole's ``loss_type: CE``), mean over valid positions.
``BCE`` (the SPRINT paper's loss)
    ``num_negatives`` uniform negatives per *sequence*, shared by all its positions, never an item of the
    sequence (inputs or targets):
    :math:`L = \mathrm{mean}_{t\ \mathrm{valid}}\,[-\log\sigma(s^+_t)]
    + \mathrm{mean}_{(t\ \mathrm{valid},\,k)}\,[-\log\sigma(-s^-_{t,k})]`.
``sampled_softmax`` (HSTU)
    ``num_negatives`` uniform negatives per *position*; logits ``[s^+, s^-_1..s^-_N] / temperature``, a negative
    equal to the positive gets logit ``-5e4``; cross-entropy of the positive, mean over valid positions.

Where the negatives come from (``negatives_exclude``), the two classic choices:

``history``
    never an item of the sequence's training window (inputs or targets). The SPRINT paper's BCE protocol
    (the authors' trainer excludes the user's input items) and the default of ``BCE``. Nothing then teaches
    the model to score the user's consumed items low: evaluate with ``eval_exclude_history`` (the default).
``target``
    any item except the position's own target (a sampled negative equal to it is left out of that position's
    loss). The default of ``sampled_softmax`` (HSTU's protocol).

Unset (``~``) means each loss's default above.

Scores and losses are computed in float32 (also under autocast). ``BCE`` with ``history`` negatives never makes
the host wait for the GPU (no ``.item()``, no boolean indexing): its negatives are drawn by rank
(:func:`sample_sequence_negatives`) and its means are masked sums over counts.
"""

import torch
import torch.nn.functional as F
from torch import nn

LOSS_TYPES = ("CE", "BCE", "sampled_softmax")
NEGATIVE_EXCLUSIONS = ("history", "target")
DEFAULT_NEGATIVE_EXCLUSION = {"BCE": "history", "sampled_softmax": "target"}
COLLISION_LOGIT = -5.0e4


def check_loss_type(loss_type):
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)} with train_mode 'full_sequence', got {loss_type!r}")
    return loss_type


def item_rows(items, ids):
    """``items[ids]`` (``[*ids.shape, d]``) as an embedding lookup, whose backward sums the gradients of repeated ids
    in parallel (a sort, then segments), where the backward of indexing (``index_put_`` with accumulation) adds each
    id's repeats one after another: a full-sequence batch's targets repeat the padding id 0 at most positions (Beauty,
    batch 512 x 50: ~80%), and that one kernel took 15 of the 22 ms of the device's step on the H200 (twenty-ninth
    session). Id 0 (padding) gets no gradient from the lookup; every loss here gives its padded positions weight 0."""
    return F.embedding(ids, items, padding_idx=0)


def ce_loss(hidden, targets, items, every_position=False):
    """Full-softmax cross-entropy at every valid position.

    ``every_position``: score every position, padding included, and leave padding out of the mean by its target 0
    (``ignore_index``): the same loss without boolean indexing, whose output size the host must read from the GPU
    (a CUDA graph cannot hold that), at the price of the padded positions' logits."""
    if every_position:
        logits = hidden.flatten(0, 1).float() @ items.float().t()  # [B * n, I]
        return F.cross_entropy(logits, targets.flatten(), ignore_index=0)
    valid = targets > 0  # [B, n]
    logits = hidden[valid].float() @ items.float().t()  # [N_valid, I]
    return F.cross_entropy(logits, targets[valid])


def sample_sequence_negatives(history, n_items, num_negatives, generator=None):
    """``num_negatives`` uniform item ids per row from ``1 .. n_items - 1``, none of them in the row's history.

    Drawn by rank, without a host synchronisation (a GPU step then runs on without waiting for the forward pass):
    each negative is the ``u``-th item outside the row's history for ``u`` uniform in ``0 .. K_b - 1``, ``K_b`` the
    number of items outside it, so every item outside the history is equally likely, independently per draw (the
    distribution of rejection sampling, with other draws).

    Args:
        history: ``[B, m]`` item ids of each row (0 = padding, ignored; repeats allowed).
        n_items: size of the item table (ids ``1 .. n_items - 1`` are real items).

    Returns:
        ``[B, num_negatives]`` (with replacement within a row).
    """
    batch, width = history.shape
    n_real = n_items - 1
    positions = torch.arange(width, device=history.device)
    # each row's distinct items in ascending order, then padding and repeats as ever larger sentinels
    ordered = history.sort(dim=1).values  # [B, m]
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    sentinel = n_items + width
    ordered = torch.where((ordered == 0) | repeat, sentinel, ordered).sort(dim=1).values  # [B, m]
    kept = ordered < sentinel  # [B, m]
    outside = n_real - kept.sum(1)  # [B]: K_b, items outside the history
    if width >= n_real and bool((outside == 0).any()):  # only a row as wide as the catalogue can hold every item
        raise ValueError("a sequence contains every item: no negative can be sampled for it")
    # the u-th item (from 0) outside the history is u + 1 + #{j : ordered_j - 1 - j <= u}: ordered_j - 1 - j counts
    # the items outside the history below the j-th history item; it never decreases along j (sentinels: above all)
    below = torch.where(kept, ordered - 1 - positions, sentinel + positions)  # [B, m], ascending
    draws = torch.rand(batch, num_negatives, device=history.device, generator=generator, dtype=torch.float64)
    u = (draws * outside[:, None]).long().clamp_max(outside[:, None] - 1)  # [B, N], uniform in 0 .. K_b - 1
    return u + 1 + torch.searchsorted(below, u, right=True)


def bce_loss(hidden, targets, items, negatives):
    r"""The paper's BCE loss with negatives shared by all positions of a sequence.

    Args:
        negatives: ``[B, N]`` item ids (see :func:`sample_sequence_negatives`). A negative equal to a position's
            target is left out of that position's negative term (it never is with ``history`` negatives).
    """
    valid = targets > 0  # [B, n]
    hidden = hidden.float()
    positive = (hidden * item_rows(items, targets).float()).sum(-1)  # [B, n]
    negative = torch.einsum("bnd,bkd->bnk", hidden, item_rows(items, negatives).float())  # [B, n, N]
    counted = valid[:, :, None] & (negatives[:, None, :] != targets[:, :, None])  # [B, n, N]
    # means as masked sums over counts (boolean indexing would wait for the GPU to count the selected entries)
    positive_loss = (F.softplus(-positive) * valid).sum() / valid.sum()  # -log sigmoid(s+)
    negative_loss = (F.softplus(negative) * counted).sum() / counted.sum()  # -log sigmoid(-s-), (valid t, negative)
    return positive_loss + negative_loss


def sample_position_negatives(targets, n_items, num_negatives, generator=None):
    """``[B, n, num_negatives]`` uniform item ids from ``1 .. n_items - 1``, drawn independently per position."""
    shape = (*targets.shape, num_negatives)
    return torch.randint(1, n_items, shape, device=targets.device, generator=generator)


def sampled_softmax_loss(hidden, targets, items, negatives, temperature, every_position=False):
    """Sampled softmax with per-position negatives ``[B, n, N]``; a negative equal to the target is masked.

    ``every_position``: as :func:`ce_loss`'s (a masked mean over every position instead of boolean indexing)."""
    valid = targets > 0  # [B, n]
    if every_position:
        per_position = _sampled_softmax_terms(hidden, targets, items, negatives, temperature)  # [B, n]
        return (per_position * valid).sum() / valid.sum()
    return _sampled_softmax_terms(hidden[valid], targets[valid], items, negatives[valid], temperature).mean()


def _sampled_softmax_terms(hidden, positives, items, negatives, temperature):
    """``-log softmax([s+, s-_1..s-_N] / T)[0]`` per position: hidden ``[..., d]``, positives ``[...]``, negatives
    ``[..., N]`` (a negative equal to its positive gets logit :data:`COLLISION_LOGIT`); returns ``[...]``."""
    hidden = hidden.float()
    positive = (hidden * item_rows(items, positives).float()).sum(-1, keepdim=True)  # [..., 1]
    negative = torch.einsum("...d,...kd->...k", hidden, item_rows(items, negatives).float())  # [..., N]
    logits = torch.cat([positive, negative], dim=-1) / temperature  # [..., 1 + N]
    collision = torch.cat([torch.zeros_like(positive, dtype=torch.bool), negatives == positives[..., None]], dim=-1)
    logits = logits.masked_fill(collision, COLLISION_LOGIT)
    return torch.logsumexp(logits, dim=-1) - logits[..., 0]


def check_negatives_exclude(config, loss_type):
    """``negatives_exclude`` for ``loss_type`` (unset: the loss's default); ``ValueError`` naming the values."""
    value = config["negatives_exclude"] if "negatives_exclude" in config else None
    if value is None:
        return DEFAULT_NEGATIVE_EXCLUSION.get(loss_type)
    if value not in NEGATIVE_EXCLUSIONS:
        raise ValueError(f"negatives_exclude must be one of {list(NEGATIVE_EXCLUSIONS)} (or ~), got {value!r}")
    return value


class FullSequenceLoss(nn.Module):
    """The configured next-item loss at every position.

    Config keys: ``loss_type`` (one of :data:`LOSS_TYPES`), ``num_negatives`` (BCE, sampled_softmax; >= 1),
    ``sampled_softmax_temperature`` (> 0), ``negatives_exclude`` (``history`` | ``target`` | ~).
    """

    def __init__(self, config, n_items):
        super().__init__()
        self.loss_type = check_loss_type(config["loss_type"])
        self.n_items = n_items
        self.num_negatives = config["num_negatives"]
        self.temperature = config["sampled_softmax_temperature"]
        self.negatives_exclude = check_negatives_exclude(config, self.loss_type)
        if self.loss_type != "CE":
            n = self.num_negatives
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"num_negatives must be an integer >= 1 for loss_type {self.loss_type}, got {n!r}")
        if self.loss_type == "sampled_softmax":
            tau = self.temperature
            if not isinstance(tau, (int, float)) or isinstance(tau, bool) or tau <= 0:
                raise ValueError(f"sampled_softmax_temperature must be a number > 0, got {tau!r}")

    def forward(self, hidden, item_seq, targets, items, every_position=False):
        """Args: hidden ``[B, n, d]``, item_seq ``[B, n]`` (inputs), targets ``[B, n]``, items ``[I, d]``;
        ``every_position``: ``CE`` and ``sampled_softmax`` without boolean indexing (see :func:`ce_loss`), so that
        the loss reads nothing on the host and a CUDA graph can hold it (``BCE`` never indexes by a mask; its history
        negatives read one value on the host only for a row as wide as the catalogue)."""
        if self.loss_type == "CE":
            return ce_loss(hidden, targets, items, every_position)
        per_position = self.loss_type == "sampled_softmax"
        if self.negatives_exclude == "history":
            history = torch.cat([item_seq, targets], dim=1)  # [B, 2n]: every item of the training window
            count = self.num_negatives * (targets.size(1) if per_position else 1)
            negatives = sample_sequence_negatives(history, self.n_items, count)  # [B, count]
            if per_position:
                negatives = negatives.view(*targets.shape, self.num_negatives)  # [B, n, N]
        elif per_position:
            negatives = sample_position_negatives(targets, self.n_items, self.num_negatives)  # [B, n, N]
        else:
            negatives = torch.randint(1, self.n_items, (targets.size(0), self.num_negatives), device=targets.device)
        if per_position:
            return sampled_softmax_loss(hidden, targets, items, negatives, self.temperature, every_position)
        return bce_loss(hidden, targets, items, negatives)
