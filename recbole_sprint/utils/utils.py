"""Model and trainer lookup by name: plugin first, then RecBole (RecBole-GNN's convention)."""

import importlib
import pkgutil

import recbole.utils
from recbole.utils import ModelType

_PLUGIN_MODEL_PACKAGE = "recbole_sprint.model.sequential_recommender"


def plugin_model_names():
    """Names of the models this plugin adds (one module per model, named ``<model>.lower()``)."""
    package = importlib.import_module(_PLUGIN_MODEL_PACKAGE)
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{_PLUGIN_MODEL_PACKAGE}.{info.name}")
        names += [name for name in vars(module) if name.lower() == info.name and isinstance(vars(module)[name], type)]
    return sorted(names)


def get_model(model_name):
    """The model class called ``model_name``: a recbole_sprint model, else a RecBole model.

    Raises:
        ValueError: the name is neither; the message lists the plugin's models.
    """
    module_path = f"{_PLUGIN_MODEL_PACKAGE}.{model_name.lower()}"
    if importlib.util.find_spec(module_path) is not None:
        module = importlib.import_module(module_path)
        if hasattr(module, model_name):
            return getattr(module, model_name)
    try:
        return recbole.utils.get_model(model_name)
    except (ValueError, ImportError):  # ImportError: RecBole's lookup of an unknown name ends in exlib (xgboost...)
        raise ValueError(
            f"model [{model_name}] is neither a recbole_sprint model ({', '.join(plugin_model_names())}) "
            "nor a RecBole model (see recbole.model.*_recommender); names are case-sensitive"
        ) from None


def get_trainer(model_type, model_name):
    """The trainer class for a model: ``recbole_sprint.trainer.<Model>Trainer`` if the plugin defines one,
    else :class:`~recbole_sprint.trainer.SprintTrainer` for models that use RecBole's plain ``Trainer``, else
    RecBole's special trainer with the compatibility fixes and the plugin's evaluation (history masking) mixed in."""
    from recbole_sprint import trainer as plugin_trainers
    from recbole_sprint.compat import CompatTrainerMixin
    from recbole_sprint.trainer.evaluation import HistoryMaskingMixin

    if hasattr(plugin_trainers, f"{model_name}Trainer"):
        return getattr(plugin_trainers, f"{model_name}Trainer")
    recbole_trainer = recbole.utils.get_trainer(model_type, model_name)
    if recbole_trainer is importlib.import_module("recbole.trainer").Trainer:
        return plugin_trainers.SprintTrainer
    from recbole_sprint.evaluator import SprintCollector

    return type(
        f"Compat{recbole_trainer.__name__}",
        (HistoryMaskingMixin, CompatTrainerMixin, recbole_trainer),
        {"collector_class": SprintCollector},
    )


def parameter_counts(model):
    """Trainable-or-not parameter counts of ``model``, each tensor counted once (tied weights).

    Embedding parameters are those of ``nn.Embedding`` modules (item and position embedding tables);
    non-embedding parameters are all the others.

    Returns:
        dict ``n_params``, ``n_params_embedding``, ``n_params_non_embedding``.
    """
    from torch import nn

    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    unique = {id(p): p for p in model.parameters()}
    n_embedding = sum(p.numel() for pid, p in unique.items() if pid in embedding_ids)
    n_total = sum(p.numel() for p in unique.values())
    return {"n_params": n_total, "n_params_embedding": n_embedding, "n_params_non_embedding": n_total - n_embedding}


__all__ = ["get_model", "get_trainer", "plugin_model_names", "parameter_counts", "ModelType"]
