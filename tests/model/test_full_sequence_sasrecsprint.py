"""SASRecSPRINT with train_mode full_sequence: all-position pass, SPRINT on it, a tiny train+evaluate run."""

import pytest
import torch
from ..conftest import tiny_config
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.utils import init_seed

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.model.sequential_recommender.sasrecsprint import SASRecSPRINT
from recbole_sprint.utils import get_trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fullseq_model")
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny_config(tmp, train_mode="full_sequence"))
    dataset = create_dataset(config)
    return tmp, config, data_preparation(config, dataset)


def _config(tmp, model="SASRecSPRINT", **overrides):
    """RecBole's prefix protocol unless overridden (SASRecSPRINT.yaml's default is full_sequence)."""
    return Config(model=model, dataset="ml-100k", config_dict=tiny_config(tmp, **{"train_mode": "prefix", **overrides}))


def _model(cls, config, dataset):
    init_seed(config["seed"], True)
    return cls(config, dataset)


def test_all_positions_equal_prefix_outputs(data):
    tmp, config, (train, _, _) = data
    model = _model(SASRecSPRINT, config, train._dataset).eval()
    batch = next(iter(train))
    item_seq, lengths = batch[model.ITEM_SEQ][:8], batch[model.ITEM_SEQ_LEN][:8]
    with torch.no_grad():
        everything = model.forward_all_positions(batch[:8])  # [B, n, d]
        assert everything.shape == (*item_seq.shape, model.hidden_size)
        assert torch.allclose(everything[torch.arange(8), lengths - 1], model.forward(item_seq, lengths), atol=1e-6)
        for t in (0, 4):  # causal: position t equals SASRec's output for the prefix ending at t
            prefix = item_seq.clone()
            prefix[:, t + 1 :] = 0
            expected = model.forward(prefix, torch.full_like(lengths, t + 1))
            assert torch.allclose(everything[:, t], expected, atol=1e-5)


def test_full_sequence_loss_is_ce_at_every_position_and_sprint_sees_the_pass(data):
    tmp, config, (train, _, _) = data
    model = _model(SASRecSPRINT, config, train._dataset).train()
    batch = next(iter(train))
    loss = model.calculate_loss(batch)  # rec + SPRINT attn + ffn + emb
    parts = model.sprint.pop_epoch_parts()  # the parts of that one step
    assert torch.isfinite(loss) and parts["sprint_attn"] > 0
    assert loss.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    # the rec part is the CE over all valid positions (dropout off to compare deterministically)
    model.eval()
    with torch.no_grad():
        hidden = model.forward_all_positions(batch)
        targets = batch[model.ITEM_TARGET_SEQ]
        valid = targets > 0
        expected = torch.nn.functional.cross_entropy(hidden[valid] @ model.item_embedding.weight.t(), targets[valid])
        assert valid.sum() > batch[model.ITEM_SEQ].size(0)  # many positions per sequence, not one
        model.sprint.attn_weight = 0.0
        model.sprint.ffn_weight = model.sprint.emb_weight = 0.0
        assert torch.allclose(model.calculate_full_sequence_loss(batch), expected, atol=1e-5)
    # SPRINT's attention statistics come from the all-position pass (every valid query row of the batch)
    model = _model(SASRecSPRINT, config, train._dataset).train()
    rows = []
    model.sprint.observe = lambda q, k, original=model.sprint.observe: (rows.append(q), original(q, k))[1]
    model.calculate_loss(batch)
    assert len(rows) == 1 and torch.equal(rows[0], batch[model.ITEM_SEQ] != 0)


def test_weights_zero_prefix_mode_trains_like_sasrec(data):
    tmp, _, (train, valid, _) = data
    zero = dict(sprint_attn_weight=0.0, sprint_ffn_weight=0.0, sprint_emb_weight=0.0)
    ours = _model(SASRecSPRINT, _config(tmp, **zero), train._dataset).train()
    theirs = _model(SASRec, _config(tmp, model="SASRec"), train._dataset).train()
    batch = next(iter(valid))[0]  # a prefix batch: item_id_list, item_length, item_id
    losses = []
    for model in (ours, theirs):
        init_seed(7, True)  # same dropout masks
        loss = model.calculate_loss(batch)
        loss.backward()
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    grads = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        assert torch.equal(param.grad, grads[name].grad), name


def test_tiny_full_sequence_run_trains_and_evaluates(data):
    tmp, config, (train, valid, test) = data
    model = _model(SASRecSPRINT, config, train._dataset)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_score, best_result = trainer.fit(train, valid, saved=False, show_progress=False, verbose=False)
    result = trainer.evaluate(test, load_best_model=False)
    assert 0 < result["ndcg@10"] <= 1 and 0 < best_result["recall@10"] <= 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert "item_embedding.weight" in changed and any("trm_encoder" in name for name in changed)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss_type": "BCE"}, r"loss_type must be one of \['CE', 'BPR'\] with train_mode 'prefix'"),
        ({"train_mode": "full_sequence", "loss_type": "BPR"}, r"loss_type must be one of \['CE', 'BCE', 'sampled_softmax'\]"),
    ],
)
def test_unsupported_loss_and_mode_is_a_clear_error(data, overrides, message):
    tmp, _, (train, _, _) = data
    with pytest.raises(ValueError, match=message):
        SASRecSPRINT(_config(tmp, **overrides), train._dataset)
