"""The authors' optimisation protocol as SprintTrainer options (recbole_sprint/trainer/optimisation.py): the
warm-up/decay schedule against its formula through a real fit, the defaults (RecBole's constant rate), TF32,
resumed runs, and clear errors for bad values."""

import pytest
import torch

from recbole_sprint.config import Config
from recbole_sprint.data import create_dataset, data_preparation
from recbole_sprint.trainer import SprintTrainer
from recbole_sprint.trainer.optimisation import check_optimisation_config, linear_warmup_decay, warmup_steps
from recbole_sprint.utils import get_model

from ..model.recbole_runs import SMALL_ML100K

LR = 0.01


@pytest.fixture
def restore_tf32():
    before = torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def fit_and_record(tiny, start_epoch=0, **overrides):
    """Fit SASRecPP (full_sequence, 449 users, batch 64: 8 steps an epoch) for 2 epochs without validation; returns
    ``(trainer, steps per epoch, the learning rate of every optimiser step)``."""
    config_dict = tiny(epochs=2, train_batch_size=64, learning_rate=LR, **SMALL_ML100K, **overrides)
    config = Config(model="SASRecPP", dataset="ml-100k", config_dict=config_dict)
    train, _, _ = data_preparation(config, create_dataset(config))
    trainer = SprintTrainer(config, get_model("SASRecPP")(config, train._dataset))
    trainer.start_epoch = start_epoch
    rates = []
    trainer.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: rates.append(optimizer.param_groups[0]["lr"]))
    trainer.fit(train, None, saved=False, show_progress=False)
    return trainer, len(train), rates


def test_formula_hand_values():
    # T = 20 steps, W = ceil(0.05 * 20) = 1; T = 100, ratio 0.25 -> W = 25
    assert warmup_steps(20, 0.05) == 1 and warmup_steps(100, 0.25) == 25 and warmup_steps(7, 0.0) == 0
    assert [linear_warmup_decay(s, 100, 25) for s in (0, 5, 25, 50, 99, 100, 101)] == [0.0, 0.2, 1.0, 50 / 75,
                                                                                     1 / 75, 0.0, 0.0]
    assert linear_warmup_decay(0, 10, 0) == 1.0 and linear_warmup_decay(9, 10, 0) == pytest.approx(0.1)


def test_linear_schedule_through_fit_matches_the_formula_at_start_end_of_warmup_and_last_step(tiny):
    trainer, per_epoch, rates = fit_and_record(tiny, lr_scheduler="linear", lr_warmup_ratio=0.25)
    total = 2 * per_epoch
    warm = warmup_steps(total, 0.25)
    assert per_epoch == 8 and len(rates) == total == 16 and warm == 4
    assert rates[0] == 0.0  # step 0: the start of the warm-up
    assert rates[warm - 1] == pytest.approx(LR * (warm - 1) / warm)
    assert rates[warm] == pytest.approx(LR)  # the end of the warm-up: the full rate
    assert rates[total - 1] == pytest.approx(LR * 1 / (total - warm))  # the last step; 0 right after it
    assert rates == pytest.approx([LR * linear_warmup_decay(s, total, warm) for s in range(total)])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(LR / (total - warm))


def test_resumed_run_continues_the_schedule(tiny):
    _, per_epoch, rates = fit_and_record(tiny, start_epoch=1, lr_scheduler="linear", lr_warmup_ratio=0.25)
    total, warm = 2 * per_epoch, warmup_steps(2 * per_epoch, 0.25)
    assert rates == pytest.approx([LR * linear_warmup_decay(s, total, warm) for s in range(per_epoch, total)])


def test_defaults_keep_recbole_s_constant_rate(tiny, restore_tf32):
    config = Config(model="SASRecPP", dataset="ml-100k", config_dict=tiny())
    assert (config["lr_scheduler"], config["lr_warmup_ratio"], config["clip_grad_norm"]) == ("none", 0.0, None)
    _, per_epoch, rates = fit_and_record(tiny)
    assert rates == [LR] * (2 * per_epoch)


@pytest.mark.parametrize("model, on", [("SASRecPP", True), ("SASRecPPSPRINT", True), ("SASRecSPRINT", True),
                                       ("BERT4RecSPRINT", True), ("HSTU", True), ("HSTUSPRINT", True),
                                       ("SASRec", False), ("BERT4Rec", False), ("GRU4Rec", False), ("BPR", False)])
def test_tf32_default_on_for_the_plugin_s_models_off_for_recbole_s(tiny, model, on):
    assert Config(model=model, dataset="ml-100k", config_dict=tiny())["tf32"] is on
    assert Config(model=model, dataset="ml-100k", config_dict=tiny(tf32=not on))["tf32"] is (not on)  # the switch


def test_default_trainer_sets_tf32_for_a_plugin_model_and_clears_it_for_recbole_s(tiny, restore_tf32):
    from recbole_sprint.utils import get_trainer

    torch.backends.cuda.matmul.allow_tf32 = False  # a previous run's setting must not leak into the next
    config = Config(model="SASRecPP", dataset="ml-100k", config_dict=tiny())
    SprintTrainer(config, get_model("SASRecPP")(config, create_dataset(config)))
    assert torch.backends.cuda.matmul.allow_tf32 is True
    config = Config(model="SASRec", dataset="ml-100k", config_dict=tiny())
    get_trainer(config["MODEL_TYPE"], "SASRec")(config, get_model("SASRec")(config, create_dataset(config)))
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_tf32_option_sets_torch_s_matmul_flag(tiny, restore_tf32):
    config = Config(model="SASRecPP", dataset="ml-100k", config_dict=tiny(tf32=True))
    model = get_model("SASRecPP")(config, create_dataset(config))
    SprintTrainer(config, model)
    assert torch.backends.cuda.matmul.allow_tf32 is True
    SprintTrainer(Config(model="SASRecPP", dataset="ml-100k", config_dict=tiny(tf32=False)), model)
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_gradient_clipping_uses_recbole_s_key(tiny):
    """clip_grad_norm {max_norm: 1e-3} with SGD: every step moves the weights by at most lr * 1e-3 (RecBole clips
    the gradient norm before the step); without clipping the first step moves them much further."""

    def largest_step(**overrides):
        config_dict = tiny(epochs=1, train_batch_size=64, learning_rate=1.0, learner="sgd", **SMALL_ML100K, **overrides)
        config = Config(model="SASRecPP", dataset="ml-100k", config_dict=config_dict)
        train, _, _ = data_preparation(config, create_dataset(config))
        trainer = SprintTrainer(config, get_model("SASRecPP")(config, train._dataset))
        params, before, moves = list(trainer.model.parameters()), [], []
        trainer.optimizer.register_step_pre_hook(lambda *_: before.__setitem__(slice(None), [p.detach().clone() for p in params]))
        trainer.optimizer.register_step_post_hook(
            lambda *_: moves.append(torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(params, before))).item()))
        trainer.fit(train, None, saved=False, show_progress=False)
        return max(moves)

    assert largest_step(clip_grad_norm={"max_norm": 1e-3}) <= 1e-3 * (1 + 1e-4)
    assert largest_step() > 1e-2


DEFAULTS = {"lr_scheduler": "none", "lr_warmup_ratio": 0.0, "tf32": False, "clip_grad_norm": None}


@pytest.mark.parametrize("values, message", [
    ({"lr_scheduler": "cosine"}, r"lr_scheduler must be one of \['none', 'linear'\], got 'cosine'"),
    ({"lr_scheduler": "linear", "lr_warmup_ratio": 1.0}, r"lr_warmup_ratio must be a number in \[0, 1\)"),
    ({"lr_scheduler": "linear", "lr_warmup_ratio": -0.1}, r"lr_warmup_ratio must be a number in \[0, 1\)"),
    ({"lr_scheduler": "linear", "lr_warmup_ratio": "5%"}, r"lr_warmup_ratio must be a number in \[0, 1\)"),
    ({"lr_warmup_ratio": 0.05}, "lr_warmup_ratio 0.05 > 0 needs lr_scheduler: linear"),
    ({"tf32": "yes"}, "tf32 must be True or False, got 'yes'"),
    ({"tf32": 1}, "tf32 must be True or False, got 1"),
    ({"clip_grad_norm": 1.0}, r"clip_grad_norm must be None or a mapping .* e\.g\. \{max_norm: 1\.0\}"),
    ({"clip_grad_norm": {"max_norm": 0}}, "clip_grad_norm max_norm must be a number > 0"),
    ({"clip_grad_norm": {"max_norm": 1.0, "norm": 2}}, r"clip_grad_norm has unknown key\(s\) \['norm'\]; allowed: max_norm"),
])
def test_bad_values_name_the_key_and_the_allowed_values(values, message):
    with pytest.raises(ValueError, match=message):
        check_optimisation_config({**DEFAULTS, **values})


def test_good_values_and_unset_keys():
    assert check_optimisation_config(DEFAULTS) == ("none", 0.0, False)
    assert check_optimisation_config(dict.fromkeys(DEFAULTS)) == ("none", 0.0, False)  # unset: RecBole's behaviour
    paper = {"lr_scheduler": "linear", "lr_warmup_ratio": 0.05, "tf32": True, "clip_grad_norm": {"max_norm": 1.0}}
    assert check_optimisation_config(paper) == ("linear", 0.05, True)


def test_bad_value_fails_when_the_trainer_is_built(tiny):
    config = Config(model="SASRecPP", dataset="ml-100k", config_dict=tiny(lr_scheduler="cosine"))
    with pytest.raises(ValueError, match="lr_scheduler must be one of"):
        SprintTrainer(config, get_model("SASRecPP")(config, create_dataset(config)))


def test_fused_optimizer_trains_as_the_unfused_one_and_names_its_learners(tiny):
    """fused_optimizer: True rebuilds RecBole's Adam / AdamW with fused=True over the same parameters and settings
    (with the linear schedule's pre-hook on it); two epochs train to the same weights as the foreach / for-loop one,
    up to rounding; another learner, or a value that is not a boolean, is a clear error."""
    runs = {}
    for fused in (False, True):
        torch.manual_seed(0)  # one initialisation, one shuffle, one dropout stream
        trainer, _, rates = fit_and_record(tiny, learner="adamw", weight_decay=0.01, fused_optimizer=fused,
                                           lr_scheduler="linear", lr_warmup_ratio=0.25,
                                           clip_grad_norm={"max_norm": 1.0})
        optimizer = trainer.optimizer
        assert type(optimizer) is torch.optim.AdamW and bool(optimizer.defaults["fused"]) is fused
        assert optimizer.defaults["weight_decay"] == 0.01
        assert [p for g in optimizer.param_groups for p in g["params"]] == list(trainer.model.parameters())
        runs[fused] = (rates, [p.detach().clone() for p in trainer.model.parameters()])
    assert runs[True][0] == pytest.approx(runs[False][0]) and runs[True][0][0] == 0.0  # the schedule ran on it
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(runs[True][1], runs[False][1]))  # measured: 1.2e-7
    assert any(not torch.equal(a, b) for a, b in zip(runs[True][1], runs[False][1]))  # another kernel, not a no-op
    with pytest.raises(ValueError, match=r"fused_optimizer: True needs learner one of \['adam', 'adamw'\], got 'sgd'"):
        fit_and_record(tiny, learner="sgd", fused_optimizer=True)
    with pytest.raises(ValueError, match="fused_optimizer must be True or False .*'yes'"):
        fit_and_record(tiny, fused_optimizer="yes")
