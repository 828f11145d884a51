"""An evaluation batch that runs out of GPU memory is scored again in halves (recursively), with the same metrics;
so is a batch scored by its score factors (whose user states SpectralCollapse reads); a single row that does not fit
still raises."""

import logging

import pytest
import torch
from recbole.utils import init_seed

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.trainer import SprintTrainer
from recbole_sprint.utils import get_model

from ..model.recbole_runs import SMALL_ML100K


def trainer_and_test_data(tiny, metrics=("Hit", "NDCG", "HistoryShare")):
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny(
        eval_batch_size=64, metrics=list(metrics), topk=[1, 5, 10], **SMALL_ML100K))
    init_seed(config["seed"], True)
    _, _, test = data_preparation(config, create_dataset(config))
    return SprintTrainer(config, get_model("SASRecSPRINT")(config, test._dataset)), test


def failing_above(model, rows, sizes):
    """``model.full_sort_predict`` that raises CUDA's out-of-memory error for batches of more than ``rows`` rows
    and records every batch size it is called with."""
    real = model.full_sort_predict

    def predict(interaction):
        sizes.append(len(interaction))
        if len(interaction) > rows:
            raise torch.OutOfMemoryError("CUDA out of memory (test)")
        return real(interaction)

    return predict


def test_a_batch_out_of_memory_is_scored_in_halves_with_the_same_metrics(tiny, monkeypatch, caplog):
    trainer, test = trainer_and_test_data(tiny)
    whole = trainer.evaluate(test, load_best_model=False)
    sizes = []
    monkeypatch.setattr(trainer.model, "full_sort_predict", failing_above(trainer.model, 20, sizes))
    with caplog.at_level(logging.WARNING):
        split = trainer.evaluate(test, load_best_model=False)
    assert split == whole  # the same scores row by row, so the same metrics
    assert max(sizes) == 64 and 16 in sizes and all(size <= 20 for size in sizes if size not in (64, 32))
    assert sum(size for size in sizes if size <= 20) == len(test.dataset)  # each user scored once in the end
    warnings = [r.message for r in caplog.records if "ran out of GPU memory" in r.message]
    assert len(warnings) == 1 and "64 rows" in warnings[0]  # said once, not per batch


def test_the_user_states_of_a_batch_out_of_memory_are_computed_in_halves_with_the_same_metrics(tiny, monkeypatch,
                                                                                             caplog):
    # the Large scaling runs (twenty-sixth session): scoring fell back to halves, then the collector's second pass for
    # the user states ran the whole batch again and died out of GPU memory; now one pass gives scores and states
    trainer, test = trainer_and_test_data(tiny, metrics=("Hit", "NDCG", "SpectralCollapse"))
    whole = trainer.evaluate(test, load_best_model=False)
    sizes, real = [], trainer.model.forward

    def forward(item_seq, *args, **kwargs):  # what the SASRec adapter of the score factors runs
        sizes.append(len(item_seq))
        if len(item_seq) > 20:
            raise torch.OutOfMemoryError("CUDA out of memory (test)")
        return real(item_seq, *args, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", forward)
    with caplog.at_level(logging.WARNING):
        split = trainer.evaluate(test, load_best_model=False)
    assert "spectralcollapse" in whole and split == whole
    # each user's state computed once in the end, in a batch that fits; + the factor check's 8 rows, twice (score
    # factors, full_sort_predict)
    assert sum(size for size in sizes if size <= 20) == len(test.dataset) + 2 * 8
    messages = [r.message for r in caplog.records if "ran out of GPU memory" in r.message]
    assert len(messages) == 1 and "64 rows" in messages[0]


def test_a_single_row_out_of_memory_still_raises(tiny, monkeypatch):
    trainer, test = trainer_and_test_data(tiny)
    monkeypatch.setattr(trainer.model, "full_sort_predict", failing_above(trainer.model, 0, []))
    with pytest.raises(torch.OutOfMemoryError):
        trainer.evaluate(test, load_best_model=False)
