"""``train_pin_memory``: the training batches copied to the GPU from page-locked memory without blocking the host
(:class:`DeviceBatches`); only on CUDA, off by default, a clear error for a bad value. No GPU here: the copy itself
is checked with ``pin_memory`` stood in for and the CPU as the target device."""

import pytest
import torch
from recbole.data.interaction import Interaction
from torch import nn

from recbole_sprint.config import Config
from recbole_sprint.trainer import SprintTrainer
from recbole_sprint.trainer.trainer import DeviceBatches


class _Loader(list):
    shuffle = True
    sampler = "the loader's sampler"


def _trainer(tiny, **overrides):
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny(device="cpu", **overrides))
    return SprintTrainer(config, nn.Linear(1, 1))


def test_device_batches_copy_every_field_from_pinned_memory_and_pass_the_rest_through(monkeypatch):
    pinned, copies = [], []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self) or self.clone())
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        copies.append(kwargs.get("non_blocking"))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    loader = _Loader([Interaction({"item_id_list": torch.tensor([[1, 2]]), "item_length": torch.tensor([2])})] * 3)
    batches = DeviceBatches(loader, torch.device("cpu"))
    assert (len(batches), batches.shuffle, batches.sampler) == (3, True, "the loader's sampler")
    out = list(batches)
    assert len(out) == 3 and all(isinstance(batch, Interaction) for batch in out)
    assert out[0]["item_id_list"].tolist() == [[1, 2]] and out[0]["item_length"].tolist() == [2]
    assert len(pinned) == 6 and copies == [True] * 6  # every field of every batch: pinned, then a non-blocking copy


def test_only_on_cuda_and_only_when_asked(tiny):
    loader = _Loader()
    off = _trainer(tiny)
    assert off.train_pin_memory is False and off.training_batches(loader) is loader
    on = _trainer(tiny, train_pin_memory=True)
    assert on.training_batches(loader) is loader  # on the CPU: nothing to copy
    on.device = torch.device("cuda")  # the wiring only: no batch is drawn
    wrapped = on.training_batches(loader)
    assert isinstance(wrapped, DeviceBatches) and wrapped.loader is loader and wrapped.device == on.device


def test_bad_value_names_the_option(tiny):
    with pytest.raises(ValueError, match="train_pin_memory must be True or False, got 1"):
        _trainer(tiny, train_pin_memory=1)
    with pytest.raises(ValueError, match="train_pin_memory must be True or False \\(default False\\), got the string"):
        _trainer(tiny, train_pin_memory="yes")
