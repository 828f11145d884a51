from recbole_sprint.utils.utils import get_model, get_trainer, parameter_counts, plugin_model_names

__all__ = ["get_model", "get_trainer", "parameter_counts", "plugin_model_names"]
