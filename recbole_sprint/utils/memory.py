"""Evaluation passes that survive running out of GPU memory (e.g. beside other runs on one GPU)."""

from logging import getLogger

import torch


class WarnOnce:
    """``on_split`` for :func:`in_halves_when_out_of_memory` that logs ``message`` (formatted with ``rows``, the size
    of the batch that did not fit) the first time it is called and never again."""

    def __init__(self, message):
        self.message = message
        self.said = False

    def __call__(self, rows):
        if not self.said:
            self.said = True
            getLogger().warning(self.message.format(rows=rows))


def in_halves_when_out_of_memory(fn, batch, on_split=None):
    """``fn(batch)`` for a batch of rows (a RecBole ``Interaction``; ``fn`` returns a tensor, or a tuple of tensors,
    with one row per batch row along dim 0). When that runs out of GPU memory, ``fn`` runs on the two halves of
    ``batch`` instead, recursively down to one row (a row that does not fit raises), and the results are
    concatenated (each tuple entry on its own): the same rows in the same order. ``on_split(rows)`` is called before
    each split, with the size of the batch that did not fit."""
    try:
        return fn(batch)
    except torch.OutOfMemoryError:
        if len(batch) < 2:
            raise
    # outside the except block, so the failed attempt's tensors (held by the traceback there) are freed first
    torch.cuda.empty_cache()
    if on_split is not None:
        on_split(len(batch))
    half = len(batch) // 2
    first = in_halves_when_out_of_memory(fn, batch[:half], on_split)
    second = in_halves_when_out_of_memory(fn, batch[half:], on_split)
    if isinstance(first, tuple):
        return tuple(torch.cat(pair) for pair in zip(first, second))
    return torch.cat([first, second])
