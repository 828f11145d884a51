"""The epoch line: RecBole's summed train loss is labelled as a sum and followed by its per-step mean, which is
on the scale of the SPRINT parts' per-step means beside it (issue 23)."""

import re

import torch
from recbole.data.interaction import Interaction
from torch import nn

from recbole_sprint.config import Config
from recbole_sprint.trainer import SprintTrainer

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _FakeSprint:
    """Stands in for SPRINTRegularizer's epoch bookkeeping: the per-step means of the parts it saw."""

    def __init__(self):
        self.parts = []

    def pop_epoch_parts(self):
        n = len(self.parts)
        means = [sum(p[i] for p in self.parts) / n for i in range(4)]
        self.parts = []
        return dict(zip(("rec", "sprint_attn", "sprint_ffn", "sprint_emb"), means))


class _Model(nn.Module):
    """Step i (from 1) has loss i + 0.75: rec i, attn 0.5, ffn 0.25, emb 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.sprint = _FakeSprint()
        self.step = 0

    def calculate_loss(self, interaction):
        self.step += 1
        self.sprint.parts.append((float(self.step), 0.5, 0.25, 0.0))
        return self.w.sum() * 0 + self.step + 0.75


def _plain(text):
    return ANSI.sub("", text)


def test_epoch_line_gives_the_per_step_mean_of_the_summed_loss(tiny):
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny(device="cpu"))
    trainer = SprintTrainer(config, _Model())
    batches = [Interaction({"x": torch.zeros(2, 1)}) for _ in range(3)]
    loss = trainer._train_epoch(batches, epoch_idx=0)
    assert loss == 1.75 + 2.75 + 3.75
    line = _plain(trainer._generate_train_loss_output(0, 0.0, 1.0, loss))
    assert "train loss: 8.2500 (sum of 3 steps; per step: 2.7500)]" in line, line
    parts = dict(re.findall(r"(rec|sprint_attn|sprint_ffn|sprint_emb): ([0-9.]+)", line.split("per-step means:")[1]))
    assert parts == {"rec": "2.0000", "sprint_attn": "0.5000", "sprint_ffn": "0.2500", "sprint_emb": "0.0000"}
    assert abs(sum(map(float, parts.values())) - 2.75) < 1e-9  # per step: loss = rec + the SPRINT terms


def test_epoch_line_of_a_model_without_sprint(tiny):
    config = Config(model="SASRecSPRINT", dataset="ml-100k", config_dict=tiny(device="cpu"))
    model = _Model()
    del model.sprint
    model.calculate_loss = lambda interaction: model.w.sum() * 0 + 3.0
    trainer = SprintTrainer(config, model)
    loss = trainer._train_epoch([Interaction({"x": torch.zeros(2, 1)})], epoch_idx=0)
    line = _plain(trainer._generate_train_loss_output(0, 0.0, 1.0, loss))
    assert line.endswith("train loss: 3.0000 (sum of 1 step; per step: 3.0000)]"), line
