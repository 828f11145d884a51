"""Checks the plugin's :class:`~recbole_sprint.config.Config` runs once the configuration is merged, so that a
wrong input fails with one clear line before any data is read or any epoch trains:

* :func:`check_keys`: every key given by the user (config files, ``config_dict``, ``--key=value``) is one that
  RecBole or recbole_sprint reads; otherwise ``did you mean ...?`` (RecBole silently ignores unknown keys, so
  ``--sprint_atn_weight=1`` would train with the default weight);
* :func:`check_value_types`: a string where the default is a number or a boolean (``--seed=abc``) is an error
  here, not a ``TypeError`` inside training;
* :func:`check_valid_metric`: ``valid_metric`` is a value the evaluation computes (RecBole fails with
  ``KeyError: 'mrr@10'`` after the first training epoch);
* :func:`check_max_item_list_length`: ``MAX_ITEM_LIST_LENGTH`` >= 1 for sequential models (0 ends in an
  ``IndexError`` inside the dataloader);
* :func:`check_tail_ratio`: ``tail_ratio`` in (0, 1) whether or not a tail metric is listed (a count > 1 only
  for RecBole's own ``TailPercentage``, whose count-threshold mode it is).
"""

import difflib
import functools
import glob
import math
import os

import yaml
from recbole.utils import ModelType

# Keys that RecBole 1.2.1 or the plugin read, or that RecBole's launch and Config set, without a yaml default
# (found by a scan of both packages' config[...] / config.get(...) reads; the yaml keys are read from the files).
KEYS_WITHOUT_DEFAULT = frozenset({
    # set by Config itself or by the multi-process launch (run(..., nproc=N), run_recbole_sprint.py's flags)
    "model", "dataset", "config_files", "config_file", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device",
    "single_spec", "local_rank", "world_size", "nproc", "offset", "group_offset", "ip", "port",
    "valid_metric_bigger", "valid_neg_sample_args", "test_neg_sample_args",
    # read by RecBole without a default in its yaml files
    "neg_sampling", "training_neg_sample_num", "encoding", "token_num_threshold", "verbose", "cin", "contrast",
    "eta", "feature_num", "has_residual", "norm", "sim", "use_filter", "xgb_early_stopping_rounds",
    "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN", "INVERSE_ITEM_SEQ", "MASK_INDEX", "MASK_ITEM_SEQ", "NEG_ITEMS",
    "POS_ITEMS", "REORDER_ITEM_SEQ",
    # read by recbole_sprint without a yaml default
    "amp_dtype", "log_flops",
})
TEACHER_PREFIX_MODELS = ("KD_DAGFM",)  # reads every 't_<key>' as its teacher's config (kd_dagfm.py:66)


class ConfigKeyError(ValueError):
    """A configuration key that neither RecBole nor recbole_sprint reads."""


def did_you_mean(name, known, n=3):
    """``"; did you mean a, b?"`` with the known names closest to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, sorted(known), n=n)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _properties_folders():
    import recbole

    from recbole_sprint.config.configurator import PLUGIN_PROPERTIES

    return [os.path.join(os.path.dirname(recbole.__file__), "properties"), PLUGIN_PROPERTIES]


@functools.lru_cache(maxsize=1)
def yaml_keys():
    """Every key of RecBole's and the plugin's default yaml files (overall, model, dataset, quick start)."""
    keys = set()
    for folder in _properties_folders():
        for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            if relative.startswith("benchmark/") or relative in ("dataset/url.yaml", "dataset/kg_url.yaml"):
                continue  # benchmark specs and dataset download lists are not configurations
            try:
                with open(path, encoding="utf-8") as f:
                    values = yaml.safe_load(f)
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(values, dict):
                keys |= {str(key) for key in values}
    return frozenset(keys)


def known_keys(config):
    """The keys ``config`` may be given: yaml defaults of every model and dataset, RecBole's argument lists,
    :data:`KEYS_WITHOUT_DEFAULT`, and whatever this config's own internal (default) configuration holds."""
    from recbole.utils import dataset_arguments, evaluation_arguments, general_arguments, training_arguments

    known = set(yaml_keys()) | KEYS_WITHOUT_DEFAULT | set(config.internal_config_dict)
    known |= set(general_arguments) | set(training_arguments) | set(evaluation_arguments) | set(dataset_arguments)
    return known


def check_keys(config):
    """Raise :class:`ConfigKeyError` for the first key given by the user that is not known (:func:`known_keys`),
    naming where it came from and the closest known keys."""
    known = known_keys(config)
    sources = (("the command line", config.cmd_config_dict, "--{}=..."), ("config_dict", config.variable_config_dict, "{}"),
               ("a config file", config.file_config_dict, "{}:"))
    for where, values, form in sources:
        for key in values:
            if key in known:
                continue
            if config.model in TEACHER_PREFIX_MODELS and str(key).startswith("t_"):
                continue
            raise ConfigKeyError(
                f"unknown config key [{key}] (from {where}: {form.format(key)}): neither RecBole nor recbole_sprint "
                f"reads it{did_you_mean(str(key), known)}"
            )


def _result_keys(config):
    """The keys of the evaluation result: ``metric@k`` for top-k metrics, else the metric name (lower case)."""
    from recbole.evaluator.register import metric_information

    topk_needs = {"rec.topk", "rec.items", "rec.history"}
    keys = []
    for metric in config["metrics"]:
        name = str(metric).lower()
        if topk_needs & set(metric_information.get(name, ())):
            keys += [f"{name}@{k}" for k in config["topk"]]
        else:
            keys.append(name)
    return keys


def check_valid_metric(config):
    """``ValueError`` unless ``valid_metric`` is one of the values the evaluation computes."""
    valid = config["valid_metric"]
    keys = _result_keys(config)
    if not isinstance(valid, str) or valid.lower() not in keys:
        default = "" if "valid_metric" in config.external_config_dict else " (the default)"
        raise ValueError(
            f"valid_metric [{valid}]{default} is not among the values the evaluation computes ({', '.join(keys)}, from "
            f"metrics {list(config['metrics'])} and topk {list(config['topk'])}); choose one of them or add its "
            "metric (and k) to metrics/topk"
        )


def check_max_item_list_length(config):
    """``ValueError`` unless a sequential model's ``MAX_ITEM_LIST_LENGTH`` is an integer >= 1."""
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return
    length = config["MAX_ITEM_LIST_LENGTH"]
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(
            f"MAX_ITEM_LIST_LENGTH must be an integer >= 1 (the most recent interactions a sequential model sees), "
            f"got {length!r}"
        )


def check_tail_ratio(config):
    """``tail_ratio`` must be in (0, 1), or a finite number > 0 where RecBole's ``TailPercentage`` (for which
    a value > 1 is a count threshold) is listed."""
    from recbole_sprint.evaluator.popularity import check_tail_ratio as check_share

    if "tail_ratio" not in config:
        return
    value = config["tail_ratio"]
    if "tailpercentage" in {str(m).lower() for m in config["metrics"]}:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"tail_ratio must be a number > 0 (a share in (0, 1), or for TailPercentage a count "
                             f"threshold > 1), got {value!r}")
        return
    check_share(value)


STRING_FOR_NUMBER_KEYS = ("gpu_id",)  # RecBole's default is 0, and "" (CPU) or "0,1" are values too


def check_value_types(config):
    """``ValueError`` for a string given where the default is a number or a boolean (e.g. ``--seed=abc``, or a
    value that was code: it stays a string, see compat shim 14), instead of a failure deep inside training."""
    for key, value in config.external_config_dict.items():
        if not isinstance(value, str) or key in STRING_FOR_NUMBER_KEYS:
            continue
        default = config.internal_config_dict.get(key)
        if isinstance(default, bool):
            expected = "True or False"
        elif isinstance(default, (int, float)):
            expected = "a number"
        else:
            continue
        raise ValueError(f"{key} must be {expected} (default {default!r}), got the string {value!r}")


def check_config(config):
    """The checks of this module after :func:`check_keys` (which the Config runs first, before it looks for the
    dataset's files)."""
    check_value_types(config)
    check_valid_metric(config)
    check_max_item_list_length(config)
    check_tail_ratio(config)
