"""recbole_sprint.trainer
#######################

:class:`SprintTrainer` is RecBole's :class:`~recbole.trainer.Trainer` with the compatibility fixes of
:mod:`recbole_sprint.compat` and a training log that names the parts of a multi-part loss (for SPRINT
models: the recommendation loss and the weighted attention, feed-forward and embedding terms).
"""

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_sprint.compat import CompatTrainerMixin
from recbole_sprint.evaluator import SprintCollector


class SprintTrainer(CompatTrainerMixin, Trainer):
    """Trainer for plugin models and for RecBole models that use RecBole's plain Trainer."""

    collector_class = SprintCollector  # data for the plugin's metrics (recbole_sprint.evaluator)

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        names = getattr(self.model, "loss_names", None)
        if not isinstance(losses, tuple) or names is None or len(names) != len(losses):
            return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        parts = ", ".join(set_color(name, "blue") + f": {value:.4f}" for name, value in zip(names, losses))
        return (
            set_color("epoch %d training", "green") % epoch_idx
            + " ["
            + set_color("time", "blue")
            + f": {e_time - s_time:.2f}s, "
            + set_color("train loss", "blue")
            + f": {sum(losses):.4f} (sum over batches: {parts})]"
        )
