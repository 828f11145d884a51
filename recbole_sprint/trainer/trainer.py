"""recbole_sprint.trainer
#######################

:class:`SprintTrainer` is RecBole's :class:`~recbole.trainer.Trainer` with the compatibility fixes of
:mod:`recbole_sprint.compat` and a training log that adds, for SPRINT models, the per-step means of the
recommendation loss and of the weighted attention, feed-forward and embedding terms.
"""

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_sprint.compat import CompatTrainerMixin
from recbole_sprint.evaluator import SprintCollector


class SprintTrainer(CompatTrainerMixin, Trainer):
    """Trainer for plugin models and for RecBole models that use RecBole's plain Trainer."""

    collector_class = SprintCollector  # data for the plugin's metrics (recbole_sprint.evaluator)

    def __init__(self, config, model):
        super().__init__(config, model)
        self.sprint_parts = None  # {"rec": ..., "sprint_attn": ..., ...} of the last epoch

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        total_loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        sprint = getattr(self.model, "sprint", None)
        self.sprint_parts = sprint.pop_epoch_parts() if sprint is not None else None
        return total_loss

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        output = super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        if not self.sprint_parts:
            return output
        parts = ", ".join(set_color(name, "blue") + f": {value:.4f}" for name, value in self.sprint_parts.items())
        return output + f" [per-step means: {parts}]"
