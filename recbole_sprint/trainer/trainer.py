"""recbole_sprint.trainer
#######################

:class:`SprintTrainer` is RecBole's :class:`~recbole.trainer.Trainer` with the compatibility fixes of
:mod:`recbole_sprint.compat` and a training log that adds, for SPRINT models, the per-step means of the
recommendation loss and of the weighted attention, feed-forward and embedding terms.

Mixed precision: RecBole's ``enable_amp: True`` runs ``calculate_loss`` under ``torch.autocast`` with the
device's default dtype (float16 on CUDA). The plugin adds ``amp_dtype``:

* ``bfloat16`` (default when ``amp_dtype`` is unset): autocast in bf16, no GradScaler (bf16 has fp32's range);
* ``float16``: autocast in fp16 with RecBole's GradScaler, switched on on CUDA (fp16 gradients underflow
  without it).

SPRINT's power iterations always run in float32 (the estimators disable autocast), and the plugin
losses score in float32. With ``sprint_compile: cuda_graph`` or ``backbone_compile: cuda_graph`` the loss runs with
autocast's weight cache off, which ``torch.cuda.make_graphed_callables`` requires (otherwise SPRINT's terms or the
backbone would run eagerly under mixed precision).

``train_pin_memory: True`` (default off, CUDA only): each training batch is copied to the GPU from page-locked
memory without blocking (:class:`DeviceBatches`), so RecBole's ``interaction.to(device)`` finds it there; a
pageable copy makes the host wait for everything the GPU has queued at the start of every step.

``train_loss_sync`` (when the host reads the training loss): ``step`` (RecBole's loop, the default for RecBole's
models) reads every step's loss on the host (``loss.item()``) and checks it for NaN between the forward and the
backward pass, so the host waits for the GPU at every step and cannot queue the next step's work while the GPU
computes; ``epoch`` (the default for the plugin's own models) sums the losses on the device and reads the sum once,
after the epoch's last step, where a NaN (of any step: it propagates into the sum) raises RecBole's error. Same
updates, same logged sums up to float rounding (float32 on the device against Python floats); a NaN is reported at
the end of its epoch instead of at its step. Multi-process runs (``--nproc``) keep RecBole's loop.

The authors' optimisation protocol, for any model (:mod:`recbole_sprint.trainer.optimisation`): ``lr_scheduler:
linear`` with ``lr_warmup_ratio`` (linear warm-up over that share of all training steps, then linear decay to 0),
RecBole's ``clip_grad_norm`` (validated here), and ``tf32`` (TF32 CUDA matmuls). The defaults keep RecBole's
behaviour, except ``tf32``, on by default for the plugin's own models.
"""

import functools

import torch
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer
from recbole.utils import get_gpu_usage, set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from recbole_sprint.compat import CompatTrainerMixin
from recbole_sprint.evaluator import SprintCollector
from recbole_sprint.trainer.optimisation import (LinearWarmupDecay, check_flag, check_optimisation_config,
                                                 fused_optimizer, set_tf32)
from recbole_sprint.trainer.evaluation import HistoryMaskingMixin
from recbole_sprint.model.sprint import SPRINT_GRAPH_MODES


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
LOSS_SYNCS = ("step", "epoch")


def check_amp_dtype(config):
    """The ``torch.dtype`` of ``amp_dtype`` (unset: bfloat16); ``ValueError`` naming the allowed values."""
    name = config["amp_dtype"] or "bfloat16"
    if name not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {list(AMP_DTYPES)}, got {name!r}")
    return AMP_DTYPES[name]


def autocast_loss(loss_func, device_type, dtype, cache_enabled=True):
    """``loss_func`` run under ``torch.autocast(device_type, dtype)`` (inside RecBole's own autocast, whose
    dtype and weight-cache setting it overrides). ``cache_enabled=False`` for ``sprint_compile: cuda_graph`` (and
    ``backbone_compile: cuda_graph``):
    ``torch.cuda.make_graphed_callables`` refuses autocast's weight cache, so with it SPRINT's graphs would not be
    used under mixed precision (the terms themselves run in float32, autocast off)."""

    @functools.wraps(loss_func)
    def run(interaction):
        with torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=cache_enabled):
            return loss_func(interaction)

    return run


def check_loss_sync(config):
    """``train_loss_sync`` (unset: ``step``); ``ValueError`` naming the allowed values otherwise."""
    value = config["train_loss_sync"]
    value = "step" if value is None else value
    if value not in LOSS_SYNCS:
        raise ValueError(f"train_loss_sync must be one of {list(LOSS_SYNCS)}, got {value!r}")
    return value


class DeviceBatches:
    """A training dataloader whose batches arrive on ``device``: every field copied from page-locked memory with
    ``non_blocking=True`` (the host queues the copy and goes on). Anything else (``len``, ``shuffle``, ``sampler``,
    ...) is the loader's."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        if name in ("loader", "device"):  # not set yet (copy / pickle): no recursion through the loader
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        for interaction in self.loader:
            yield Interaction({key: value.pin_memory().to(self.device, non_blocking=True)
                               for key, value in interaction.interaction.items()})


class SprintTrainer(HistoryMaskingMixin, CompatTrainerMixin, Trainer):
    """Trainer for plugin models and for RecBole models that use RecBole's plain Trainer."""

    collector_class = SprintCollector  # data for the plugin's metrics (recbole_sprint.evaluator)

    def __init__(self, config, model):
        super().__init__(config, model)
        self.amp_dtype = check_amp_dtype(config)
        if self.enable_amp:
            self.enable_scaler = self.amp_dtype == torch.float16 and torch.cuda.is_available()
        self.sprint_parts = None  # {"rec": ..., "sprint_attn": ..., ...} of the last epoch
        self.epoch_steps = 0  # training steps (loss calls) of the last epoch
        self.lr_scheduler, self.lr_warmup_ratio, self.tf32 = check_optimisation_config(config)
        self.train_pin_memory = check_flag(config, "train_pin_memory")
        self.loss_sync = check_loss_sync(config)
        set_tf32(self.tf32)
        self.lr_schedule = None  # a LinearWarmupDecay while fit() runs with lr_scheduler: linear

    def _build_optimizer(self, **kwargs):
        """RecBole's optimiser, fused with ``fused_optimizer: True`` (:func:`~recbole_sprint.trainer.optimisation.
        fused_optimizer`)."""
        return fused_optimizer(self.config, super()._build_optimizer(**kwargs))

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's ``fit``; with ``lr_scheduler: linear`` every optimiser step gets its scheduled rate, over
        ``epochs * len(train_data)`` steps (a resumed run continues at ``start_epoch * len(train_data)``)."""
        if self.lr_scheduler == "linear":
            steps_per_epoch = len(train_data)
            self.lr_schedule = LinearWarmupDecay(
                self.optimizer,
                self.learning_rate,
                total_steps=self.epochs * steps_per_epoch,
                warmup_ratio=self.lr_warmup_ratio,
                start_step=self.start_epoch * steps_per_epoch,
            )
        try:
            return super().fit(
                train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                callback_fn=callback_fn,
            )
        finally:
            if self.lr_schedule is not None:
                self.lr_schedule.remove()

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = loss_func or self.model.calculate_loss
        if self.enable_amp:
            graphs = (self.config["sprint_compile"] in SPRINT_GRAPH_MODES  # autocast_loss
                      or self.config["backbone_compile"] == "cuda_graph")
            loss_func = autocast_loss(loss_func, self.device.type, self.amp_dtype, cache_enabled=not graphs)
        steps = [0]
        train_epoch = super()._train_epoch
        if self.loss_sync == "epoch" and self.config["single_spec"] is not False:
            train_epoch = self._train_epoch_device_loss
        total_loss = train_epoch(
            self.training_batches(train_data), epoch_idx, loss_func=counted_steps(loss_func, steps),
            show_progress=show_progress,
        )
        self.epoch_steps = steps[0]
        sprint = getattr(self.model, "sprint", None)
        self.sprint_parts = sprint.pop_epoch_parts() if sprint is not None else None
        return total_loss

    def _train_epoch_device_loss(self, train_data, epoch_idx, loss_func, show_progress=False):
        """RecBole's ``Trainer._train_epoch`` for one process (the same steps: batch to the device, zero_grad,
        forward under autocast, backward through the GradScaler, RecBole's gradient clipping, optimiser step)
        without its two host reads per step: the step losses are summed on the device, and the sum is read and
        checked for NaN once, after the last step (``train_loss_sync: epoch``). Returns what RecBole's returns:
        the sum of the losses (a tuple of sums for a model that returns a tuple of losses)."""
        self.model.train()
        batches = train_data
        if show_progress:
            desc = set_color(f"Train {epoch_idx:>5}", "pink")
            batches = tqdm(train_data, total=len(train_data), ncols=100, desc=desc)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.enable_scaler)
        total = None  # [parts] float32 sum on the device
        for interaction in batches:
            interaction = interaction.to(self.device)
            self.optimizer.zero_grad()
            with torch.autocast(device_type=self.device.type, enabled=self.enable_amp):
                losses = loss_func(interaction)
            parts = losses if isinstance(losses, tuple) else (losses,)
            loss = sum(parts) if isinstance(losses, tuple) else losses
            step = torch.stack([part.detach().float() for part in parts])
            total = step if total is None else total + step
            scaler.scale(loss).backward()
            if self.clip_grad_norm:
                clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
            scaler.step(self.optimizer)
            scaler.update()
            if self.gpu_available and show_progress:
                batches.set_postfix_str(set_color("GPU RAM: " + get_gpu_usage(self.device), "yellow"))
        if total is None:
            return None
        sums = total.tolist()  # the epoch's one host read
        self._check_nan(torch.tensor(sums).sum())
        return tuple(sums) if isinstance(losses, tuple) else sums[0]

    def training_batches(self, train_data):
        """``train_data``, or with ``train_pin_memory`` on CUDA its batches copied without blocking the host."""
        if self.train_pin_memory and self.device.type == "cuda":
            return DeviceBatches(train_data, self.device)
        return train_data

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        """RecBole's epoch line, whose ``train loss`` is the sum over the epoch's steps, labelled so and followed
        by its per-step mean, which compares with the per-step means of the SPRINT parts after it:
        ``train loss: 51.5156 (sum of 8 steps; per step: 6.4394)] [per-step means: rec: 6.3210, sprint_attn: ...``
        (per step, ``loss = rec + sprint_attn + sprint_ffn + sprint_emb``)."""
        output = super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        steps = getattr(self, "epoch_steps", 0)
        if steps and output.endswith("]"):
            decimals = self.config["loss_decimal_place"] or 4
            means = losses if isinstance(losses, tuple) else (losses,)
            means = ", ".join(f"{loss / steps:.{decimals}f}" for loss in means)
            output = output[:-1] + f" (sum of {steps} step{'s' if steps != 1 else ''}; " + set_color("per step", "blue") + f": {means})]"
        if not self.sprint_parts:
            return output
        parts = ", ".join(set_color(name, "blue") + f": {value:.4f}" for name, value in self.sprint_parts.items())
        return output + f" [per-step means: {parts}]"


def counted_steps(loss_func, steps):
    """``loss_func`` that adds 1 to ``steps[0]`` per call (one call per training step in RecBole's loop)."""

    @functools.wraps(loss_func)
    def run(interaction):
        steps[0] += 1
        return loss_func(interaction)

    return run
