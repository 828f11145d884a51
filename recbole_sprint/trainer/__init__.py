from recbole_sprint.trainer.trainer import SprintTrainer

__all__ = ["SprintTrainer"]
