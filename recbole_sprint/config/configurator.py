"""recbole_sprint.config.configurator
####################################

RecBole's :class:`recbole.config.Config`, extended so that plugin models resolve by name and find their yaml
defaults. For a model class ``M`` the internal (lowest-priority) configuration is, in order:

1. RecBole's ``overall.yaml``, ``sample.yaml`` (as RecBole loads them), then this plugin's ``overall.yaml``;
2. for every class in ``M``'s MRO, base first: RecBole's ``properties/model/<Class>.yaml`` and then this
   plugin's ``properties/model/<Class>.yaml`` (so ``SASRecSPRINT`` gets ``SASRec.yaml``, ``SPRINT.yaml``,
   ``SASRecSPRINT.yaml``);
3. RecBole's dataset yaml and quick-start yaml again, so that they keep RecBole's precedence over model
   defaults.

A sequential model whose ``loss_type`` is ``CE`` trains without sampled negatives unless the user sets
``train_neg_sample_args`` (RecBole's own defaults contradict each other there; compat shim 16).

External configuration (files < dict < command line) always wins, exactly as in RecBole.

Multi-process runs (``run_recbole_sprint.py --nproc=N``): RecBole starts one process per GPU and joins them
with NCCL. ``ddp_backend`` (overall.yaml) picks the backend: ``nccl`` is RecBole's own CUDA path, unchanged;
``gloo`` runs the N processes on the CPU (RecBole has no CPU path: it asserts N GPU ids and calls
``torch.cuda.set_device``). Unset, it is ``nccl`` where CUDA is available and ``gloo`` elsewhere.
"""

import contextlib
import os
import sys

import recbole.config
import torch
from recbole.utils import ModelType

from recbole_sprint import compat
from recbole_sprint.config import checks
from recbole_sprint.utils import get_model

RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.realpath(recbole.config.__file__)), "..", "properties")
PLUGIN_PROPERTIES = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "properties")


class Config(recbole.config.Config):
    """Configurator for RecBole and recbole_sprint models (same arguments as RecBole's)."""

    def compatibility_settings(self):
        compat.numpy_aliases()

    def _build_yaml_loader(self):
        return compat.ConfigYamlLoader  # plain data only, RecBole's float resolver (compat shim 14)

    def _load_config_files(self, file_list):
        return compat.load_config_files(file_list, self.yaml_loader)  # errors name the file (compat shim 14)

    def _convert_config_dict(self, config_dict):
        """String values (``--key=value``, config_dict) parsed as literals, never ``eval()``ed (compat shim 14)."""
        return compat.literal_config_values(config_dict)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_if_exists(self, path):
        if os.path.isfile(path):
            self._update_internal_config_dict(path)
            return True
        return False

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        # plugin defaults for every model (evaluator options); no RecBole yaml sets these keys
        self._load_if_exists(os.path.join(PLUGIN_PROPERTIES, "overall.yaml"))
        loaded = False
        for cls in reversed(model_class.__mro__):
            if cls.__name__ != model:  # RecBole already loaded its own yaml for the model itself
                loaded |= self._load_if_exists(os.path.join(RECBOLE_PROPERTIES, "model", f"{cls.__name__}.yaml"))
            loaded |= self._load_if_exists(os.path.join(PLUGIN_PROPERTIES, "model", f"{cls.__name__}.yaml"))
        if loaded:  # model defaults were added after RecBole's dataset/quick-start yaml: restore their precedence
            self._load_if_exists(os.path.join(RECBOLE_PROPERTIES, "dataset", f"{dataset}.yaml"))
        self._load_if_exists(os.path.join(PLUGIN_PROPERTIES, "dataset", f"{dataset}.yaml"))
        if loaded and self.internal_config_dict["MODEL_TYPE"] == ModelType.SEQUENTIAL:
            self._load_if_exists(os.path.join(RECBOLE_PROPERTIES, "quick_start_config", "sequential.yaml"))

    def _init_device(self):
        config = self.final_config_dict
        if "local_rank" not in config or ddp_backend(config) == "nccl":
            return super()._init_device()
        self._init_gloo_process_group()

    def _init_gloo_process_group(self):
        """RecBole's multi-process branch of ``_init_device`` with gloo and CPU processes."""
        config = self.final_config_dict
        config["gpu_id"] = str(config["gpu_id"])
        torch.distributed.init_process_group(
            backend="gloo",
            rank=config["local_rank"] + config["offset"],
            world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
        config["device"] = torch.device("cpu")
        config["single_spec"] = False
        if config["local_rank"] != 0:  # as RecBole: only rank 0 logs
            config["state"] = "error"
            config["show_progress"] = False
            config["verbose"] = False

    def _set_default_parameters(self):
        compat.no_negatives_for_ce(self)  # shim 16
        super()._set_default_parameters()
        checks.check_keys(self)
        from recbole_sprint.data.utils import check_dataset_files  # (the data package imports this module)

        check_dataset_files(self)  # a misnamed dataset: "no such dataset" before any advice about its columns
        checks.check_config(self)
        self._check_time_field_is_loaded()

    def _check_time_field_is_loaded(self):
        """Sequential models order interactions by TIME_FIELD; RecBole fails late and obscurely without it."""
        config = self.final_config_dict
        if config["MODEL_TYPE"] != ModelType.SEQUENTIAL or (config.get("eval_args") or {}).get("order") != "TO":
            return
        inter_columns = (config.get("load_col") or {}).get("inter")
        time_field = config.get("TIME_FIELD")
        if inter_columns is not None and time_field and time_field not in inter_columns:
            raise ValueError(
                f"load_col: {{inter: {inter_columns}}} does not load TIME_FIELD [{time_field}], which sequential "
                f"models order interactions by (eval_args order: TO); add it, e.g. --load_col=\"{{'inter': "
                f"{inter_columns + [time_field]}}}\", or set TIME_FIELD/eval_args for your data"
            )


DDP_BACKENDS = ("nccl", "gloo")


def ddp_backend(config):
    """``config["ddp_backend"]``, or ``nccl`` with CUDA and ``gloo`` without; ``ValueError`` for other values."""
    backend = config.get("ddp_backend")
    if backend is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in DDP_BACKENDS:
        raise ValueError(f"ddp_backend must be one of {list(DDP_BACKENDS)} (or unset), got {backend!r}")
    return backend


@contextlib.contextmanager
def recbole_argv_cleared():
    """RecBole's Config reads every ``--key=value`` of ``sys.argv``: hide a driver's own flags (and a Ray
    worker's ``--node-ip-address=...``) while a Config whose configuration is passed explicitly is built."""
    saved = sys.argv
    sys.argv = sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = saved
