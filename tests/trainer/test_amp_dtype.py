"""amp_dtype: bf16 (default) or fp16 autocast around calculate_loss in SprintTrainer."""

import pytest
import torch
from recbole.data.interaction import Interaction
from torch import nn

from recbole_sprint.config import Config
from recbole_sprint.trainer import SprintTrainer
from recbole_sprint.trainer.trainer import check_amp_dtype


class _Recorder(nn.Module):
    """A stand-in model: records the autocast state its calculate_loss runs under."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.seen = []
        self.cache = []  # autocast's weight cache on or off in each step

    def calculate_loss(self, interaction):
        out = self.linear(interaction["x"])  # autocast casts the matmul
        self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        self.cache.append(torch.is_autocast_cache_enabled())
        return out.float().pow(2).mean()


def _train_one_epoch(tiny, **overrides):
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny(device="cpu", **overrides))
    model = _Recorder()
    trainer = SprintTrainer(config, model)
    batches = [Interaction({"x": torch.randn(3, 4)}) for _ in range(2)]
    before = model.linear.weight.detach().clone()
    loss = trainer._train_epoch(batches, epoch_idx=0)
    assert loss > 0 and not torch.equal(before, model.linear.weight)  # the optimizer stepped
    return trainer, model.seen


def test_cuda_graphs_run_under_autocast_without_its_weight_cache(tiny):
    """``sprint_compile: cuda_graph`` or ``backbone_compile: cuda_graph`` with mixed precision: calculate_loss runs
    with autocast's weight cache off (which ``make_graphed_callables`` requires, so the graphs can be used under bf16);
    otherwise the cache stays on."""
    for key, mode, cached in (("sprint_compile", "cuda_graph", False), ("backbone_compile", "cuda_graph", False),
                              ("sprint_compile", "none", True)):
        config = Config(model="SASRecSPRINT", dataset="ml-100k",
                        config_dict=tiny(device="cpu", enable_amp=True, **{key: mode}))
        model = _Recorder()
        SprintTrainer(config, model)._train_epoch([Interaction({"x": torch.randn(3, 4)})] * 2, epoch_idx=0)
        assert model.cache == [cached, cached] and model.seen == [(True, torch.bfloat16)] * 2, (key, mode)


def test_bf16_is_the_default_amp_dtype(tiny):
    trainer, seen = _train_one_epoch(tiny, enable_amp=True)
    assert seen == [(True, torch.bfloat16)] * 2
    assert trainer.enable_scaler is False


def test_fp16_overrides_the_device_default(tiny):
    _, seen = _train_one_epoch(tiny, enable_amp=True, amp_dtype="float16")
    assert seen == [(True, torch.float16)] * 2


def test_amp_off_runs_in_fp32(tiny):
    _, seen = _train_one_epoch(tiny, enable_amp=False, amp_dtype="bfloat16")
    assert seen == [(False, torch.float32)] * 2


def test_bad_amp_dtype_is_a_clear_error():
    with pytest.raises(ValueError, match=r"amp_dtype must be one of \['bfloat16', 'float16'\]"):
        check_amp_dtype({"amp_dtype": "fp8"})
