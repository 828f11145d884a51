"""Scoring by the score factors when SpectralCollapse needs the user states (recbole_sprint.trainer.evaluation):
one forward pass a user, the same ranking metrics as RecBole's full_sort_predict, and a model whose factors do not
give its scores fails the evaluation instead of being ranked by them."""

import pytest
from recbole.utils import init_seed

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.utils import get_model, get_trainer

from ..model.recbole_runs import SMALL_ML100K

RANKING = ["Hit", "NDCG", "HistoryShare", "TailCoverage"]


def evaluated(tiny, name, metrics):
    """``(trainer, training data, test data)`` of an untrained ``name`` on a small ml-100k (the ranking of a random
    model is as good a check as a trained one's: the question is whether two scoring paths rank alike)."""
    config = Config(model=name, dataset="ml-100k", config_dict=tiny(
        eval_batch_size=64, metrics=list(metrics), topk=[1, 5, 10], **SMALL_ML100K))
    init_seed(config["seed"], True)
    train, _, test = data_preparation(config, create_dataset(config))
    model = get_model(name)(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], name)(config, model)
    trainer.eval_collector.data_collect(train)  # popularity counts, as fit() does
    return trainer, train, test


def rows_through_forward(trainer, monkeypatch):
    """A list that gets the batch size of every call of the model's ``forward`` (which RecBole's and the plugin's
    sequential models call for scores and score factors alike)."""
    sizes, real = [], trainer.model.forward

    def forward(item_seq, *args, **kwargs):
        sizes.append(len(item_seq))
        return real(item_seq, *args, **kwargs)

    monkeypatch.setattr(trainer.model, "forward", forward)
    return sizes


# RecBole's SASRec and BERT4Rec through their adapters (BERT4Rec's with its output bias), SASRec++'s and HSTU's own
# score_factors, and each SPRINT model on its backbone's
@pytest.mark.parametrize("name", ["SASRec", "SASRecSPRINT", "SASRecPPSPRINT", "BERT4Rec", "BERT4RecSPRINT", "HSTU",
                                  "HSTUSPRINT"])
def test_spectral_collapse_costs_no_second_forward_pass_and_changes_no_ranking_metric(tiny, monkeypatch, name):
    trainer, _, test = evaluated(tiny, name, RANKING)
    sizes = rows_through_forward(trainer, monkeypatch)
    plain = trainer.evaluate(test, load_best_model=False)
    assert sum(sizes) == len(test.dataset)

    trainer, _, test = evaluated(tiny, name, RANKING + ["SpectralCollapse"])
    sizes = rows_through_forward(trainer, monkeypatch)
    factored = trainer.evaluate(test, load_best_model=False)
    # each user once (it was twice: scores, then the collector's pass for the user states), and the factor check's
    # 8 rows twice (score factors, full_sort_predict)
    assert sum(sizes) == len(test.dataset) + 2 * 8
    assert 0 < factored.pop("spectralcollapse") <= 1
    assert factored == plain and plain["hit@10"] > plain["hit@1"]  # the same ranking, item for item


def counted_popularity(tiny, metrics):
    """Pop with its counts taken from the training data, as one epoch of training takes them."""
    trainer, train, test = evaluated(tiny, "Pop", metrics)
    for batch in train:
        trainer.model.calculate_loss(batch)
    return trainer.evaluate(test, load_best_model=False)


def test_the_popularity_baseline_ranks_alike_by_its_factors(tiny):
    plain = counted_popularity(tiny, RANKING)
    factored = counted_popularity(tiny, RANKING + ["SpectralCollapse"])
    assert factored.pop("spectralcollapse") == 1.0  # every user gets the same scores: rank one
    assert factored == plain


def test_score_factors_that_do_not_give_the_model_s_scores_fail_the_evaluation(tiny, monkeypatch):
    # the trainer ranks by the factors when SpectralCollapse is listed: wrong factors must not become metrics
    trainer, _, test = evaluated(tiny, "SASRecPPSPRINT", RANKING + ["SpectralCollapse"])
    real = trainer.model.score_factors

    def shifted(interaction):
        users, items, bias = real(interaction)
        return users + 1.0, items, bias

    monkeypatch.setattr(trainer.model, "score_factors", shifted)
    with pytest.raises(RuntimeError, match="score_factors of SASRecPPSPRINT do not reproduce its full_sort_predict"):
        trainer.evaluate(test, load_best_model=False)


def test_score_factors_with_a_wrong_number_of_items_fail_with_a_clear_error(tiny, monkeypatch):
    trainer, _, test = evaluated(tiny, "SASRecPPSPRINT", RANKING + ["SpectralCollapse"])
    real = trainer.model.score_factors
    monkeypatch.setattr(trainer.model, "score_factors", lambda interaction: (real(interaction)[0],
                                                                             real(interaction)[1][1:], None))
    with pytest.raises(RuntimeError, match="E must have one row per item"):
        trainer.evaluate(test, load_best_model=False)
