"""``train_loss_sync``: ``epoch`` trains exactly as RecBole's loop (``step``) without reading a loss on the host
at every step; its summed loss, the SPRINT parts' log, a NaN and a bad value."""

import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.utils import init_seed
from torch import nn

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.trainer import SprintTrainer
from recbole_sprint.utils import get_model

from ..model.recbole_runs import SMALL_ML100K


def train_two_epochs(tiny, monkeypatch, **overrides):
    """SASRecPPSPRINT (full_sequence, 449 users, batch 64: 8 steps an epoch, SPRINT on, warm-up, clipping) trained
    2 epochs from seed 2020; ``(trainer, [epoch loss sums], {name: weight}, (loss reads, NaN checks))``: the
    ``Tensor.item`` calls on a tensor of the autograd graph (a step's loss) and the ``_check_nan`` calls (each a
    host read of a device value) inside the epochs. The data pipeline's reads of CPU tensors do not count."""
    config_dict = tiny(train_batch_size=64, learning_rate=0.01, lr_scheduler="linear", lr_warmup_ratio=0.1,
                       clip_grad_norm={"max_norm": 1.0}, **SMALL_ML100K, **overrides)
    config = Config(model="SASRecPPSPRINT", dataset="ml-100k", config_dict=config_dict)
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    trainer = SprintTrainer(config, get_model("SASRecPPSPRINT")(config, train._dataset))
    reads, checks, real_item, real_check = [], [], torch.Tensor.item, trainer._check_nan
    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "item", lambda self: reads.append(self.requires_grad) or real_item(self))
        patch.setattr(trainer, "_check_nan", lambda loss: checks.append(1) or real_check(loss))
        sums = [trainer._train_epoch(train, epoch) for epoch in range(2)]
    weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    return trainer, sums, weights, (sum(reads), len(checks))


def test_epoch_sync_trains_exactly_as_recboles_loop_without_per_step_host_reads(tiny, monkeypatch):
    step_trainer, step_sums, step_weights, step_reads = train_two_epochs(tiny, monkeypatch, train_loss_sync="step")
    epoch_trainer, epoch_sums, epoch_weights, epoch_reads = train_two_epochs(tiny, monkeypatch, train_loss_sync="epoch")
    assert step_trainer.loss_sync == "step" and epoch_trainer.loss_sync == "epoch"
    assert step_reads == (16, 16)  # RecBole: loss.item() and the NaN check at each of the 16 steps
    assert epoch_reads == (0, 2)  # here: one NaN check of the summed losses per epoch
    assert epoch_sums == pytest.approx(step_sums, rel=1e-5) and isinstance(epoch_sums[0], float)
    assert epoch_trainer.epoch_steps == step_trainer.epoch_steps == 8
    assert epoch_weights.keys() == step_weights.keys()
    for name, weight in step_weights.items():
        assert torch.equal(epoch_weights[name], weight), name  # the same updates, bit for bit
    assert epoch_trainer.sprint_parts.keys() == step_trainer.sprint_parts.keys()  # the epoch log's parts
    assert list(epoch_trainer.sprint_parts.values()) == pytest.approx(list(step_trainer.sprint_parts.values()))


class _Model(nn.Module):
    """Step i (from 1) returns ``(i * w, 0.5 * w)`` with w = 1, or a NaN at step ``nan_at``."""

    def __init__(self, nan_at=None):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.step, self.nan_at = 0, nan_at

    def calculate_loss(self, interaction):
        self.step += 1
        first = self.w.sum() * (float("nan") if self.step == self.nan_at else self.step)
        return first, 0.5 * self.w.sum()


def _trainer(tiny, model, **overrides):
    config = Config(model="SASRecSPRINT", dataset="ml-100k",
                    config_dict=tiny(device="cpu", learning_rate=0.0, **overrides))
    return SprintTrainer(config, model)


def test_a_tuple_of_losses_comes_back_as_a_tuple_of_sums_as_in_recboles_loop(tiny):
    batches = [Interaction({"x": torch.zeros(2, 1)}) for _ in range(3)]
    recbole = _trainer(tiny, _Model(), train_loss_sync="step")._train_epoch(batches, 0)
    ours = _trainer(tiny, _Model(), train_loss_sync="epoch")._train_epoch(batches, 0)
    assert recbole == (6.0, 1.5) and ours == (6.0, 1.5)


def test_a_nan_step_raises_recboles_error_at_the_end_of_the_epoch(tiny):
    model = _Model(nan_at=2)
    batches = [Interaction({"x": torch.zeros(2, 1)}) for _ in range(4)]
    with pytest.raises(ValueError, match="Training loss is nan"):
        _trainer(tiny, model, train_loss_sync="epoch")._train_epoch(batches, 0)
    assert model.step == 4  # reported after the epoch's last step (RecBole's loop: at step 2)


def test_the_plugins_models_default_to_epoch_recboles_keep_step(tiny):
    for model, expected in (("SASRecSPRINT", "epoch"), ("SASRecPPSPRINT", "epoch"), ("HSTUSPRINT", "epoch"),
                            ("BERT4RecSPRINT", "epoch"), ("SASRec", "step"), ("BERT4Rec", "step")):
        config = Config(model=model, dataset="ml-100k", config_dict=tiny(device="cpu"))
        assert SprintTrainer(config, nn.Linear(1, 1)).loss_sync == expected, model


def test_bad_value_names_the_option_and_the_allowed_values(tiny):
    with pytest.raises(ValueError, match=r"train_loss_sync must be one of \['step', 'epoch'\], got 'batch'"):
        _trainer(tiny, _Model(), train_loss_sync="batch")
