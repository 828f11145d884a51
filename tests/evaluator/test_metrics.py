"""Plugin metrics against hand-computed values, dense SVDs and RecBole's own definitions."""

import math
from collections import Counter

import numpy as np
import pytest
import recbole.evaluator.metrics as recbole_metrics
import torch
from recbole.evaluator.collector import DataStruct

from recbole_sprint.evaluator import metrics as M
from recbole_sprint.evaluator.popularity import check_popularity_source, check_tail_ratio, tail_mask

# Hand-made case: items 1..10 (0 = padding). Ascending (count, id): 4(0) 6(1) 7(1) 8(2) 2(3) 3(3) 10(3) 1(5) 5(8) 9(10)
POPULARITY = torch.tensor([0, 5, 3, 3, 0, 8, 1, 1, 2, 10, 3])
TOP3 = torch.tensor([[9, 5, 2], [9, 4, 1], [5, 9, 10]])  # 3 users, best first
# held-out items (row, item): user 0 {2, 9}, user 1 {6} (listed twice), user 2 {5}
POSITIVES = torch.tensor([[0, 2], [0, 9], [1, 6], [1, 6], [2, 5]])
TOPK = [1, 3]


def ids(mask):
    return set(torch.nonzero(mask).flatten().tolist())


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (0.1, {4}),  # floor(1.0) = 1 item
        (0.5, {4, 6, 7, 8, 2}),  # the count-3 tie (2, 3, 10) is cut by item id
        (0.8, {4, 6, 7, 8, 2, 3, 10, 1}),  # head = {5, 9}
        (0.99, {4, 6, 7, 8, 2, 3, 10, 1, 5}),  # floor(9.9) = 9
    ],
)
def test_tail_set_by_ascending_count_then_id(ratio, expected):
    mask = tail_mask(POPULARITY, ratio)
    assert ids(mask) == expected
    assert not mask[0]  # padding is never an item


def test_tail_set_is_independent_of_padding_count_and_empty_tail_raises():
    popularity = POPULARITY.clone()
    popularity[0] = 1000  # whatever the padding entry holds
    assert ids(tail_mask(popularity, 0.5)) == {4, 6, 7, 8, 2}
    with pytest.raises(ValueError, match=r"tail_ratio=0.05 gives an empty tail set for 10 items"):
        tail_mask(POPULARITY, 0.05)


def test_arp_by_hand():
    # @1: (10 + 10 + 8) / 3; @3: mean of (10+8+3)/3, (10+0+5)/3, (8+10+3)/3 = 7, 5, 7
    values = M.average_recommendation_popularity(TOP3, POPULARITY, TOPK)
    assert values.tolist() == pytest.approx([28 / 3, 19 / 3])


@pytest.mark.parametrize(
    "ratio, exposure, coverage",
    [
        (0.5, [0.0, 2 / 9], [0.0, 2 / 5]),  # T = {2,4,6,7,8}: slots 2 (u0), 4 (u1)
        (0.8, [0.0, 4 / 9], [0.0, 4 / 8]),  # T adds 1, 3, 10: slots 2 | 4, 1 | 10
    ],
)
def test_tail_exposure_and_coverage_by_hand(ratio, exposure, coverage):
    tail = tail_mask(POPULARITY, ratio)
    assert M.tail_exposure(TOP3, tail, TOPK).tolist() == pytest.approx(exposure)
    assert M.tail_coverage(TOP3, tail, TOPK).tolist() == pytest.approx(coverage)


def test_tail_recall_by_hand_skips_users_without_tail_item():
    tail = tail_mask(POPULARITY, 0.5)  # {2,4,6,7,8}
    # user 0: tail target 2 at rank 3 -> 0 @1, 1 @3; user 1: tail target 6 never recommended -> 0, 0;
    # user 2: no held-out tail item -> not in the mean (it would pull @3 down to 1/3)
    assert M.tail_recall(TOP3, POSITIVES, tail, TOPK).tolist() == pytest.approx([0.0, 0.5])


def test_tail_recall_counts_a_users_tail_targets_separately():
    tail = tail_mask(POPULARITY, 0.8)  # {1,2,3,4,6,7,8,10}
    positives = torch.tensor([[1, 4], [1, 1], [1, 3]])  # user 1: 4 at rank 2, 1 at rank 3, 3 missing
    assert M.tail_recall(TOP3, positives, tail, TOPK).tolist() == pytest.approx([0.0, 2 / 3])


def test_tail_recall_is_nan_when_no_user_has_a_tail_item():
    tail = tail_mask(POPULARITY, 0.5)
    values = M.tail_recall(TOP3, torch.tensor([[0, 9], [2, 5]]), tail, TOPK)
    assert all(math.isnan(v) for v in values.tolist())


def test_tail_recall_over_all_items_is_recboles_recall():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(50, 30, generator=generator)
    items = scores.topk(10, dim=1).indices  # [50, 10]
    positives = torch.stack([torch.arange(50).repeat(3), torch.randint(0, 30, (150,), generator=generator)], dim=1)
    pos_matrix = torch.zeros(50, 30, dtype=torch.int)
    pos_matrix[positives[:, 0], positives[:, 1]] = 1
    hits = torch.gather(pos_matrix, 1, items)
    struct = DataStruct()
    struct.set("rec.topk", torch.cat([hits, pos_matrix.sum(1, keepdim=True)], dim=1))
    recall = recbole_metrics.Recall({"metric_decimal_place": 10, "topk": [1, 5, 10]}).calculate_metric(struct)
    ours = M.tail_recall(items, positives, torch.ones(30, dtype=torch.bool), [1, 5, 10])
    assert ours.tolist() == pytest.approx([recall["recall@1"], recall["recall@5"], recall["recall@10"]], abs=1e-9)


def _config(**overrides):
    config = {
        "topk": TOPK,
        "metric_decimal_place": 4,
        "tail_ratio": 0.5,
        "popularity_source": "train",
        "model": "SASRec",
    }
    config.update(overrides)
    return config


def _struct():
    struct = DataStruct()
    struct.set("rec.items", TOP3)
    struct.set("data.item_popularity", POPULARITY)
    struct.set("rec.positives", POSITIVES)
    return struct


def test_metric_classes_report_rounded_values_under_recbole_keys():
    struct, config = _struct(), _config()
    assert M.ARP(config).calculate_metric(struct) == {"arp@1": 9.3333, "arp@3": 6.3333}
    assert M.TailExposure(config).calculate_metric(struct) == {"tailexposure@1": 0.0, "tailexposure@3": 0.2222}
    assert M.TailCoverage(config).calculate_metric(struct) == {"tailcoverage@1": 0.0, "tailcoverage@3": 0.4}
    assert M.TailRecall(config).calculate_metric(struct) == {"tailrecall@1": 0.0, "tailrecall@3": 0.5}


def test_missing_collector_data_gives_a_clear_error():
    struct = DataStruct()
    struct.set("rec.items", TOP3)
    with pytest.raises(KeyError, match="ARP needs 'data.item_popularity'.*data_collect"):
        M.ARP(_config()).calculate_metric(struct)


@pytest.mark.parametrize("ratio", [0, 1, 1.0, -0.2, 1.5, 20, None, "0.8", True])
def test_tail_ratio_outside_open_unit_interval_is_rejected(ratio):
    with pytest.raises(ValueError, match=r"tail_ratio must be a number in the open interval \(0, 1\)"):
        check_tail_ratio(ratio)
    with pytest.raises(ValueError, match="tail_ratio"):
        M.TailExposure(_config(tail_ratio=ratio))


@pytest.mark.parametrize("source", ["test", "ALL", None])
def test_unknown_popularity_source_is_rejected(source):
    with pytest.raises(ValueError, match="popularity_source must be one of train, all"):
        check_popularity_source(source)
    with pytest.raises(ValueError, match="popularity_source must be one of train, all"):
        M.ARP(_config(popularity_source=source))


# Spectral diagnostics ---------------------------------------------------------------------------------
def test_spectral_collapse_equals_dense_svd_of_the_score_matrix():
    generator = torch.Generator().manual_seed(1)
    for n_users, n_items, dim in [(40, 25, 6), (3, 25, 6), (40, 4, 6)]:  # U > d, U < d, I < d
        users = torch.randn(n_users, dim, generator=generator)
        items = torch.randn(n_items, dim, generator=generator)
        sigma = torch.linalg.svdvals(users.double() @ items.double().T)
        expected = (sigma[0] ** 2 / (sigma**2).sum()).item()
        assert M.spectral_collapse(users, items).item() == pytest.approx(expected, rel=1e-9)
        ours = M.score_singular_values(users, items)  # min(U, I, d) values; the dense rest are 0
        assert ours.tolist() == pytest.approx(sigma[: len(ours)].tolist(), rel=1e-9)
        assert all(value < 1e-9 for value in sigma[len(ours) :].tolist())


def test_spectral_collapse_folds_an_item_bias_into_the_factors():
    generator = torch.Generator().manual_seed(2)
    users, items, bias = torch.randn(30, 5, generator=generator), torch.randn(20, 5), torch.randn(20)
    sigma = torch.linalg.svdvals(users.double() @ items.double().T + bias.double())
    assert M.spectral_collapse(users, items, bias).item() == pytest.approx((sigma[0] ** 2 / (sigma**2).sum()).item())


def test_spectral_collapse_of_a_rank_one_score_matrix_is_one():
    users = torch.tensor([[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0]])
    items = torch.randn(7, 2)
    assert M.spectral_collapse(users, items).item() == pytest.approx(1.0)


def test_information_abundance_against_svdvals_and_by_hand():
    items = torch.randn(50, 8, generator=torch.Generator().manual_seed(3))
    sigma = torch.linalg.svdvals(items.double())
    assert M.information_abundance(items).item() == pytest.approx((sigma.sum() / sigma.max()).item())
    # orthogonal columns with norms 4, 2, 1: (4 + 2 + 1) / 4
    assert M.information_abundance(torch.diag(torch.tensor([4.0, 2.0, 1.0]))).item() == pytest.approx(7 / 4)


def test_factor_metric_classes_drop_the_padding_row():
    users = torch.randn(6, 3, generator=torch.Generator().manual_seed(4))
    items = torch.randn(9, 3, generator=torch.Generator().manual_seed(5))
    struct = DataStruct()
    struct.set("rec.user_factors", users)
    struct.set("model.item_factors", items)
    config = _config(metric_decimal_place=10)
    expected = M.spectral_collapse(users, items[1:]).item()
    assert M.SpectralCollapse(config).calculate_metric(struct) == {"spectralcollapse": round(expected, 10)}
    assert M.spectral_collapse(users, items).item() != pytest.approx(expected, abs=1e-6)  # the row matters
    expected = M.information_abundance(items[1:]).item()
    assert M.InformationAbundance(config).calculate_metric(struct) == {"informationabundance": round(expected, 10)}


def test_factor_metrics_refuse_a_model_without_factors_at_construction():
    with pytest.raises(NotImplementedError, match="SpectralCollapse needs the score factors of GRU4Rec"):
        M.SpectralCollapse(_config(model="GRU4Rec"))
    M.InformationAbundance(_config(model="BERT4Rec"))  # adapter exists
    M.InformationAbundance(_config(model="SASRecSPRINT"))  # inherits SASRec's adapter


# Devices ----------------------------------------------------------------------------------------------
DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_pure_functions_stay_on_the_input_device(device):
    """'meta' tensors have no data: any hidden CPU tensor, .numpy() or .item() inside a function fails here,
    exactly as it would on a GPU."""
    items, popularity, positives = TOP3.to(device), POPULARITY.to(device), POSITIVES.to(device)
    tail = torch.zeros(11, dtype=torch.bool, device=device)
    tail[[2, 4, 6, 7, 8]] = True
    outputs = [
        M.average_recommendation_popularity(items, popularity, TOPK),
        M.tail_exposure(items, tail, TOPK),
        M.tail_coverage(items, tail, TOPK),
        M.spectral_collapse(torch.ones(4, 3, device=device), torch.ones(5, 3, device=device), torch.ones(5, device=device)),
        M.information_abundance(torch.ones(5, 3, device=device)),
    ]
    if device != "meta":  # data-dependent shapes (masking, unique) cannot run without data
        outputs.append(M.tail_recall(items, positives, tail, TOPK))
        outputs.append(tail_mask(popularity, 0.5))
    assert all(output.device.type == device for output in outputs)


# RecBole's metrics, vectorised -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tail_ratio", [None, 0.1, 0.8, 1, 3])
def test_vectorised_recbole_metrics_equal_recboles(seed, tail_ratio):
    rng = np.random.default_rng(seed)
    num_items = 60
    items = torch.from_numpy(np.stack([rng.choice(np.arange(1, num_items), 20, replace=False) for _ in range(70)]))
    counts = rng.integers(1, 9, size=num_items)
    counter = Counter({i: int(counts[i]) for i in range(1, num_items) if i % 7})  # some items never in training
    struct = DataStruct()
    struct.set("rec.items", items)
    struct.set("data.count_items", counter)
    struct.set("data.num_items", num_items)
    config = {"topk": [1, 5, 20], "metric_decimal_place": 12, "tail_ratio": tail_ratio}
    for name in ["AveragePopularity", "TailPercentage", "GiniIndex"]:
        theirs = getattr(recbole_metrics, name)(config).calculate_metric(struct)
        ours = getattr(M, name)(config).calculate_metric(struct)
        assert ours == theirs, name  # bit-identical
