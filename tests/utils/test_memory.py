"""in_halves_when_out_of_memory: the same rows in the same order, however often the batch is split."""

import pytest
import torch

from recbole_sprint.utils.memory import in_halves_when_out_of_memory


def squares_failing_above(rows, calls):
    def fn(batch):
        calls.append(len(batch))
        if len(batch) > rows:
            raise torch.OutOfMemoryError("CUDA out of memory (test)")
        return batch.float() ** 2  # one result row per batch row

    return fn


def test_a_batch_that_does_not_fit_is_run_in_halves_in_order():
    batch = torch.arange(11).reshape(11, 1)
    calls, splits = [], []
    out = in_halves_when_out_of_memory(squares_failing_above(3, calls), batch, splits.append)
    assert torch.equal(out, batch.float() ** 2)
    assert splits == [11, 5, 6]  # 11 -> 5 + 6 -> (2 + 3) + (3 + 3)
    assert [size for size in calls if size <= 3] == [2, 3, 3, 3]


def test_a_batch_that_fits_runs_once_and_a_row_that_does_not_raises():
    calls = []
    out = in_halves_when_out_of_memory(squares_failing_above(20, calls), torch.ones(4, 2))
    assert calls == [4] and out.shape == (4, 2)
    with pytest.raises(torch.OutOfMemoryError):
        in_halves_when_out_of_memory(squares_failing_above(0, []), torch.ones(3, 1))


def test_a_tuple_of_results_is_concatenated_entry_by_entry():
    # the trainer's factored scoring returns (scores [B, I], user states [B, d])
    batch = torch.arange(7).reshape(7, 1)
    inner = squares_failing_above(2, [])
    scores, states = in_halves_when_out_of_memory(lambda rows: (inner(rows), -rows.repeat(1, 3)), batch)
    assert torch.equal(scores, batch.float() ** 2) and torch.equal(states, -batch.repeat(1, 3))
