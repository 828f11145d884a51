"""Shim 7: RecBole's FeedForward uses F.gelu, with the same (exact erf) values as its hand-written formula."""

import math

import torch
from recbole.model.layers import FeedForward

from recbole_sprint import compat


def _recbole_gelu(x):  # recbole/model/layers.py:521
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def test_feedforward_uses_fused_gelu_with_identical_values():
    assert FeedForward.gelu is compat._fused_gelu  # installed by importing recbole_sprint
    torch.manual_seed(0)
    layer = FeedForward(hidden_size=8, inner_size=16, hidden_dropout_prob=0.0, hidden_act="gelu", layer_norm_eps=1e-12)
    x = torch.randn(4, 5, 8, requires_grad=True)
    out = layer(x)
    reference = layer.LayerNorm(layer.dense_2(_recbole_gelu(layer.dense_1(x))) + x)
    assert torch.allclose(out, reference, atol=1e-6)
    grad, = torch.autograd.grad(out.sum(), x)
    grad_ref, = torch.autograd.grad(reference.sum(), x)
    assert torch.allclose(grad, grad_ref, atol=1e-6)
    z = torch.linspace(-6, 6, 1001)
    assert torch.allclose(layer.intermediate_act_fn(z), _recbole_gelu(z), atol=1e-6)
