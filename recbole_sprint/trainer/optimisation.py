r"""The authors' optimisation protocol as trainer options (spec sasrecpp.md, "Training protocol"), for any model
trained by :class:`~recbole_sprint.trainer.SprintTrainer`.

=====================  ===========  ===============================================================================
key                    default      meaning
=====================  ===========  ===============================================================================
``lr_scheduler``       ``none``     ``none``: RecBole's constant ``learning_rate``; ``linear``: linear warm-up over
                                    the first ``lr_warmup_ratio`` of all training steps, then linear decay to 0
``lr_warmup_ratio``    ``0.0``      share of the ``epochs * len(train_data)`` optimiser steps spent warming up,
                                    in ``[0, 1)`` (the authors: 0.05); needs ``lr_scheduler: linear`` when > 0
``clip_grad_norm``     ``~``        RecBole's own key, reused: keyword arguments of
                                    ``torch.nn.utils.clip_grad_norm_``, e.g. ``{max_norm: 1.0}`` (the authors')
``fused_optimizer``    ``False``    ``True``: RecBole's ``learner: adam`` / ``adamw`` built with ``fused=True`` (torch's
                                    single-kernel Adam, CUDA and CPU; the same update up to rounding): fewer
                                    operator calls, for a host-bound GPU step (SASRec++ 2 layers, AdamW with
                                    clipping, ``sprint_overhead.py --count_ops`` on the CPU: the step's rest 206 ->
                                    28 operators; on CUDA torch's default is its foreach Adam, not counted here);
                                    other learners: an error
``tf32``               see below    ``True``: CUDA float32 matmuls in TF32 (``torch.backends.cuda.matmul.allow_tf32``,
                                    the authors' setting); ``False``: full float32, torch's and RecBole's default.
                                    Default ``True`` for the plugin's own models (``FullSequence.yaml``,
                                    ``BERT4RecSPRINT.yaml``), ``False`` for RecBole's (``overall.yaml``)
=====================  ===========  ===============================================================================

The schedule (``lr_scheduler: linear``), the one of Hugging Face's ``get_linear_schedule_with_warmup`` that the
authors' trainer uses: with ``T = epochs * len(train_data)`` optimiser steps and ``W = ceil(lr_warmup_ratio * T)``,
optimiser step ``s = 0 .. T-1`` runs at

.. math::

    \mathrm{lr}(s) = \mathrm{learning\_rate} \cdot
        \begin{cases} s / W & s < W \\ (T - s) / (T - W) & s \ge W \end{cases}

so the first step of a warm-up runs at 0, step ``W`` at the full ``learning_rate``, the last step at
``learning_rate / (T - W)``, and the rate reaches 0 at ``s = T``, right after the last step. ``T`` counts every
planned epoch: an early-stopped run ends before the rate reaches 0. A resumed run (RecBole's
``resume_checkpoint``) continues the schedule at step ``start_epoch * len(train_data)``. An optimiser step that
the fp16 GradScaler skips (non-finite gradients) does not advance the schedule, as in Hugging Face's trainer.

``tf32`` is set for the whole process when a trainer is built (every trainer sets it, so runs of one process,
e.g. a benchmark's cells, each get their own value); cuDNN convolutions keep torch's default. It only changes
CUDA matmuls: on the CPU both values train identically.
"""

import math

import torch

LR_SCHEDULERS = ("none", "linear")
FUSED_LEARNERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}  # fused_optimizer: True
CLIP_GRAD_NORM_KEYS = ("max_norm", "norm_type", "error_if_nonfinite", "foreach")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_optimisation_config(config):
    """``(lr_scheduler, lr_warmup_ratio, tf32)`` from the config, validated; ``ValueError`` naming the key and the
    allowed values. Unset keys (``None``) are RecBole's behaviour: no schedule, no warm-up, TF32 off. Also checks
    RecBole's ``clip_grad_norm``, which RecBole passes to ``clip_grad_norm_`` unchecked."""
    scheduler = config["lr_scheduler"]
    scheduler = "none" if scheduler is None else scheduler
    if scheduler not in LR_SCHEDULERS:
        raise ValueError(f"lr_scheduler must be one of {list(LR_SCHEDULERS)}, got {scheduler!r}")
    ratio = config["lr_warmup_ratio"]
    ratio = 0.0 if ratio is None else ratio
    if not _is_number(ratio) or not 0 <= ratio < 1:
        raise ValueError(f"lr_warmup_ratio must be a number in [0, 1) (a share of all training steps), got {ratio!r}")
    if ratio > 0 and scheduler == "none":
        raise ValueError(
            f"lr_warmup_ratio {ratio!r} > 0 needs lr_scheduler: linear (lr_scheduler 'none' keeps the learning rate "
            "constant); allowed lr_scheduler values: " + ", ".join(LR_SCHEDULERS)
        )
    tf32 = check_flag(config, "tf32")
    check_clip_grad_norm(config["clip_grad_norm"])
    return scheduler, float(ratio), tf32


def check_flag(config, key):
    """The boolean option ``key`` (unset: False); ``ValueError`` naming it and the allowed values otherwise."""
    value = config[key]
    value = False if value is None else value
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, got {value!r}")
    return value


def check_clip_grad_norm(value):
    """RecBole's ``clip_grad_norm``: ``None`` (no clipping) or a mapping of ``clip_grad_norm_`` arguments with
    ``max_norm > 0``."""
    if value is None:
        return
    allowed = ", ".join(CLIP_GRAD_NORM_KEYS)
    if not isinstance(value, dict) or "max_norm" not in value:
        raise ValueError(
            f"clip_grad_norm must be None or a mapping of torch.nn.utils.clip_grad_norm_ arguments with max_norm, "
            f"e.g. {{max_norm: 1.0}} (keys: {allowed}), got {value!r}"
        )
    unknown = sorted(set(value) - set(CLIP_GRAD_NORM_KEYS))
    if unknown:
        raise ValueError(f"clip_grad_norm has unknown key(s) {unknown}; allowed: {allowed}")
    if not _is_number(value["max_norm"]) or not value["max_norm"] > 0:
        raise ValueError(f"clip_grad_norm max_norm must be a number > 0, got {value['max_norm']!r}")


def fused_optimizer(config, optimizer):
    """``optimizer`` (RecBole's, from ``learner``), or with ``fused_optimizer: True`` the same Adam / AdamW built again
    with ``fused=True`` over the same parameters and settings; ``ValueError`` naming the option and the learners it
    allows otherwise."""
    if not check_flag(config, "fused_optimizer"):
        return optimizer
    learner = str(config["learner"]).lower()
    if learner not in FUSED_LEARNERS or type(optimizer) is not FUSED_LEARNERS[learner]:
        raise ValueError(f"fused_optimizer: True needs learner one of {sorted(FUSED_LEARNERS)}, "
                         f"got {config['learner']!r}")
    group = optimizer.param_groups[0]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return type(optimizer)(params, lr=group["lr"], weight_decay=group["weight_decay"], fused=True)


def set_tf32(enabled):
    """TF32 for CUDA float32 matmuls on (``True``) or off (``False``, torch's default), for the whole process."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)


def warmup_steps(total_steps, warmup_ratio):
    """``W = ceil(warmup_ratio * T)`` (Hugging Face's rounding)."""
    return math.ceil(warmup_ratio * total_steps)


def linear_warmup_decay(step, total_steps, n_warmup_steps):
    """Factor on the learning rate of optimiser step ``step`` (0-based): ``s / W`` before ``W``, then
    ``(T - s) / (T - W)``, never below 0 (see the module docstring)."""
    if step < n_warmup_steps:
        return step / n_warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - n_warmup_steps))


class LinearWarmupDecay:
    """Sets every parameter group's learning rate right before each optimiser step (a step pre-hook), so RecBole's
    training loop stays as it is.

    Args:
        optimizer: the trainer's optimiser; learning_rate: the peak rate (the config's ``learning_rate``; not
            read from the optimiser, whose rate a resumed checkpoint has left at a scheduled value).
        total_steps: ``T``; warmup_ratio: share of ``T`` warming up; start_step: the first step's index.
    """

    def __init__(self, optimizer, learning_rate, total_steps, warmup_ratio, start_step=0):
        if total_steps < 1:
            raise ValueError(f"lr_scheduler: linear needs at least one training step, got {total_steps}")
        self.learning_rate = learning_rate
        self.total_steps = total_steps
        self.n_warmup_steps = warmup_steps(total_steps, warmup_ratio)
        self.step = start_step  # index of the next optimiser step
        self._handle = optimizer.register_step_pre_hook(self._before_step)
        self._set(optimizer)

    def lr_at(self, step):
        return self.learning_rate * linear_warmup_decay(step, self.total_steps, self.n_warmup_steps)

    def _set(self, optimizer):
        for group in optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)

    def _before_step(self, optimizer, args, kwargs):
        self._set(optimizer)
        self.step += 1

    def remove(self):
        """Detach from the optimiser (the rate stays at the last step's)."""
        self._handle.remove()
