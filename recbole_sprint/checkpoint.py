"""Checkpoints that load without running code: ``torch.load(weights_only=True)``.

RecBole's trainer saves ``{"config": Config, ...}`` pickled (``trainer.py:308``), so reading one back means
unpickling, which can run any code the file names: a checkpoint downloaded from someone else is a program. The
plugin's trainers (:class:`recbole_sprint.compat.CompatTrainerMixin`) write instead:

* the weights, optimizer state and training counters as tensors and numbers (as RecBole does), and
* the configuration as plain data (``dict``/``list``/``str``/numbers/``None``; RecBole's enums, ``torch.device``
  and tuples as small tagged dicts), from which :func:`config_from_plain` rebuilds the same
  :class:`recbole_sprint.config.Config` (every dict of it, as RecBole's pickled Config held them).

:func:`load_checkpoint` reads these with ``weights_only=True``. Anything else (RecBole's own checkpoints, those
of recbole_sprint before this format, foreign files) holds pickled objects and is refused with
:class:`UntrustedCheckpointError` unless the caller opts in with ``trust_pickle=True``
(``load_data_and_model(path, trust_pickle=True)``, ``trainer.resume_checkpoint(path, trust_pickle=True)``, or
``trainer.trust_pickle = True`` before ``trainer.evaluate``): only for files whose origin you trust.
"""

import enum
import os
import pickle
import warnings

import torch

FORMAT_KEY = "recbole_sprint_checkpoint"
FORMAT_VERSION = 1
_TAG = "__recbole_sprint__"
# Config attributes saved (besides final_config_dict): RecBole's Config keeps the merged sources as well
_CONFIG_DICTS = ("final_config_dict", "internal_config_dict", "external_config_dict", "file_config_dict",
                 "variable_config_dict", "cmd_config_dict")


class CheckpointError(ValueError):
    """A file that is not a checkpoint the plugin can read (missing, corrupt, or without weights)."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that holds pickled objects; it loads only with an explicit ``trust_pickle=True``."""


def _enum_types():
    from recbole.utils import enum_type

    return {name: value for name, value in vars(enum_type).items()
            if isinstance(value, type) and issubclass(value, enum.Enum) and value is not enum.Enum}


def to_plain(value):
    """``value`` as data that ``torch.load(weights_only=True)`` (and JSON) can hold: RecBole's enums,
    ``torch.device`` and tuples become tagged dicts, numpy scalars numbers; anything else its ``str``."""
    if isinstance(value, enum.Enum):
        return {_TAG: "enum", "type": type(value).__name__, "name": value.name}
    if isinstance(value, torch.device):
        return {_TAG: "device", "value": str(value)}
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [to_plain(item) for item in value]}
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    for plain_type in (bool, int, float, str):  # subclasses (np.float64, np.str_) as the builtin type
        if isinstance(value, plain_type):
            return plain_type(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return value.item()
    return str(value)


def from_plain(value):
    """The inverse of :func:`to_plain` (an unknown tag is an error, not a guess)."""
    if isinstance(value, list):
        return [from_plain(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {key: from_plain(item) for key, item in value.items()}
    if tag == "enum":
        types = _enum_types()
        if value.get("type") not in types or value.get("name") not in types[value["type"]].__members__:
            raise CheckpointError(f"checkpoint config holds an unknown RecBole enum value {value!r}")
        return types[value["type"]][value["name"]]
    if tag == "device":
        return torch.device(value["value"])
    if tag == "tuple":
        return tuple(from_plain(item) for item in value["items"])
    raise CheckpointError(f"checkpoint config holds an unknown tagged value {value!r}")


def config_to_plain(config):
    """A RecBole / plugin Config as plain data (see :func:`config_from_plain`)."""
    plain = {"model": str(config.model), "dataset": str(config.dataset),
             "parameters": {k: list(v) for k, v in getattr(config, "parameters", {}).items()}}
    for name in _CONFIG_DICTS:
        plain[name] = to_plain(getattr(config, name, None) or {})
    return plain


def config_from_plain(plain):
    """The plugin :class:`~recbole_sprint.config.Config` that :func:`config_to_plain` saved, rebuilt without
    re-reading yaml files or the command line (the values are the saved run's, exactly)."""
    from recbole_sprint.config import Config
    from recbole_sprint.utils import get_model

    if not isinstance(plain, dict) or "final_config_dict" not in plain or "model" not in plain:
        raise CheckpointError("checkpoint config is not the plain data recbole_sprint saves")
    config = Config.__new__(Config)
    config.compatibility_settings()
    config.yaml_loader = config._build_yaml_loader()
    config.parameters = {k: list(v) for k, v in (plain.get("parameters") or {}).items()}
    for name in _CONFIG_DICTS:
        setattr(config, name, from_plain(plain.get(name) or {}))
    config.model, config.dataset = plain["model"], plain["dataset"]
    config.model_class = get_model(config.model)
    return config


def checkpoint_state(trainer, epoch):
    """What the plugin's trainers save: RecBole's checkpoint keys, every value plain data or tensors."""
    score = trainer.best_valid_score
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "config": config_to_plain(trainer.config),
        "epoch": int(epoch),
        "cur_step": int(trainer.cur_step),
        "best_valid_score": float(score) if score is not None else None,
        "state_dict": trainer.model.state_dict(),
        "other_parameter": trainer.model.other_parameter(),
        "optimizer": trainer.optimizer.state_dict(),
    }


def load_checkpoint(path, map_location=None, trust_pickle=False):
    """Read a checkpoint; its ``"config"`` is returned as a Config.

    The plugin's own checkpoints load with ``weights_only=True``. Others hold pickled objects and load only
    with ``trust_pickle=True`` (through full unpickling, which runs code the file names).

    Raises:
        CheckpointError: no such file, not a PyTorch checkpoint, or no ``state_dict`` in it.
        UntrustedCheckpointError: pickled objects and ``trust_pickle`` not given.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": RecBole's files, refused just below
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust_pickle:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UntrustedCheckpointError(
                f"checkpoint {path} holds pickled Python objects (RecBole's own format, recbole_sprint's before it "
                f"saved plain data, or a foreign file; torch: {reason[:200]}), and unpickling runs whatever code "
                "the file names, so it was not loaded. If you trust where it came from, load it with "
                "trust_pickle=True (load_data_and_model, resume_checkpoint; trainer.trust_pickle for evaluate)"
            ) from None
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"checkpoint {path}: not a readable PyTorch checkpoint ({error})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path}: no 'state_dict' in it (not a RecBole/recbole_sprint checkpoint)")
    config = checkpoint.get("config")
    if isinstance(config, dict):
        checkpoint["config"] = config_from_plain(config)
    return checkpoint
