"""train_mode: full_sequence on RecBole's datasets: one row per user, shifted targets, RecBole's valid/test."""

import pytest
import recbole.data
import torch
from ..conftest import tiny_config

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.data.dataset import FullSequenceDataset, target_list_field
from recbole_sprint.data.dataset.full_sequence_dataset import last_row_per_user, shifted_targets


def _prepare(tmp_dir, **overrides):
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny_config(tmp_dir, **overrides))
    dataset = create_dataset(config)
    return (config, dataset, *data_preparation(config, dataset))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(config, full-sequence data, RecBole's own prefix data) for the same tiny ml-100k config."""
    tmp = tmp_path_factory.mktemp("fullseq")
    length = {"MAX_ITEM_LIST_LENGTH": 50}  # ml-100k users have >= 20 items: short histories get padding
    full = _prepare(tmp, train_mode="full_sequence", **length)
    config = full[0]
    dataset = recbole.data.create_dataset(
        Config(model="SASRec", dataset="ml-100k", config_dict=tiny_config(tmp, **length))
    )
    prefix = (None, dataset, *recbole.data.data_preparation(dataset.config, dataset))
    return config, full, prefix


def _per_user(inter, uid_field):
    return {int(uid): index for index, uid in enumerate(inter[uid_field])}


def test_shifted_targets_by_hand():
    item_seq = torch.tensor([[5, 6, 7, 0], [9, 0, 0, 0], [1, 2, 3, 4]])
    targets = shifted_targets(item_seq, torch.tensor([3, 1, 4]), torch.tensor([8, 2, 5]))
    assert targets.tolist() == [[6, 7, 8, 0], [2, 0, 0, 0], [2, 3, 4, 5]]


def test_last_row_per_user():
    assert last_row_per_user(torch.tensor([3, 1, 3, 2, 1, 3]).numpy()).tolist() == [3, 4, 5]


def test_one_training_row_per_user(both):
    config, full, prefix = both
    uid = config["USER_ID_FIELD"]
    train_rows = full[2].dataset.inter_feat
    assert isinstance(full[1], FullSequenceDataset)
    users = train_rows[uid].tolist()
    assert len(users) == len(set(users))
    assert set(users) == set(prefix[2].dataset.inter_feat[uid].tolist())  # users with a training prefix sample


def test_inputs_targets_shifted_and_padding_masked(both):
    config, full, _ = both
    batch = next(iter(full[2]))  # a real training batch from RecBole's TrainDataLoader
    item_seq = batch[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]]
    targets = batch[target_list_field(config)]
    lengths = batch[config["ITEM_LIST_LENGTH_FIELD"]]
    last = batch[config["ITEM_ID_FIELD"]]
    positions = torch.arange(item_seq.size(1))[None, :]
    valid = positions < lengths[:, None]
    assert torch.equal(item_seq != 0, valid)  # right padding, as RecBole
    assert torch.equal(targets != 0, valid)  # no target at padding positions
    inner = valid[:, 1:]
    assert torch.equal(targets[:, :-1][inner], item_seq[:, 1:][inner])  # target t = input t + 1
    assert torch.equal(targets[torch.arange(len(lengths)), lengths - 1], last)
    assert (lengths == item_seq.size(1)).any() and (lengths < item_seq.size(1)).any()  # both cases covered


def test_valid_and_test_items_never_in_training(both):
    config, full, prefix = both
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    seq_field = iid + config["LIST_SUFFIX"]
    len_field = config["ITEM_LIST_LENGTH_FIELD"]
    train = full[2].dataset.inter_feat
    # RecBole's OWN valid/test splits (built by recbole.data, prefix mode) for the same users
    valid, test = prefix[3].dataset.inter_feat, prefix[4].dataset.inter_feat
    valid_row, test_row = _per_user(valid, uid), _per_user(test, uid)
    checked = 0
    for row in range(len(train)):
        user, length = int(train[uid][row]), int(train[len_field][row])
        window = train[seq_field][row][:length].tolist() + [int(train[iid][row])]
        assert train[target_list_field(config)][row][:length].tolist() == window[1:]
        held_out = {int(valid[iid][valid_row[user]]), int(test[iid][test_row[user]])}
        assert not held_out & set(window), user
        # the training window is exactly what precedes the validation target
        v = valid_row[user]
        valid_seq = valid[seq_field][v][: int(valid[len_field][v])].tolist()
        k = min(len(window), len(valid_seq))
        assert window[-k:] == valid_seq[-k:], user
        checked += 1
    assert checked == len(train) > 900


def test_valid_and_test_dataloaders_are_recboles(both):
    _, full, prefix = both
    for ours, theirs in ((full[3], prefix[3]), (full[4], prefix[4])):
        assert type(ours) is type(theirs)
        a, b = ours.dataset.inter_feat, theirs.dataset.inter_feat
        assert sorted(a.columns) == sorted(b.columns)
        for column in a.columns:
            if column.startswith("timestamp"):  # ours exact (float64), RecBole's rounded to float32: same rows
                assert a[column].dtype == torch.float64 and torch.equal(a[column].float().double(), b[column].double())
            else:
                assert torch.equal(a[column], b[column]), column


def test_bad_train_mode_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"train_mode must be one of \['prefix', 'full_sequence'\]"):
        create_dataset(Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny(train_mode="full")))


def test_full_sequence_needs_a_full_sequence_model(tiny):
    with pytest.raises(ValueError, match="train_mode 'full_sequence' is not supported by SASRec"):
        create_dataset(Config(model="SASRec", dataset="ml-100k", config_dict=tiny(train_mode="full_sequence")))


def test_full_sequence_rejects_dataloader_negatives(tiny):
    neg = {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0}
    config = Config(
        model="SASRecSPRINT",
        dataset="ml-100k",
        config_dict=tiny(train_mode="full_sequence", loss_type="BCE", train_neg_sample_args=neg),
    )
    with pytest.raises(ValueError, match="train_neg_sample_args must be None"):
        create_dataset(config)


def test_training_popularity_is_the_prefix_splits(both):
    """Popularity metrics must not depend on train_mode: the one-row-per-user split keeps the prefix split's counts."""
    from recbole_sprint.evaluator.popularity import item_interaction_counts, item_popularity

    _, full, prefix = both
    full_train, prefix_train = full[2].dataset, prefix[2].dataset
    assert full_train.item_counter == prefix_train.item_counter  # RecBole's AveragePopularity / TailPercentage
    expected = item_interaction_counts(prefix_train)
    assert torch.equal(item_popularity(full_train, "train"), expected)
    assert expected.sum() > 10 * len(full_train)  # the row format alone would count about one item per user
