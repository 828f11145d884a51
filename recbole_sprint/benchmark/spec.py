"""Benchmark spec: load a YAML file, validate every entry before anything trains, expand it into a grid.

A spec (see ``recbole_sprint/properties/benchmark/*.yaml``)::

    name: smoke                       # names the default output folder
    models: [SASRec, {name: SASRecSPRINT, config: {sprint_attn_weight: 1.0}}]
    # or {name: SASRecSPRINT, label: SASRec, config: {...weights 0}}: a labelled row (see MODEL_KEYS)
    # or {name: HSTUSPRINT, label: HSTUSPRINT-tuned, config: {...}, dataset_config: {ml-1m-3k: {...}}}: values
    #    for one dataset's runs only (e.g. weights searched on each dataset)
    # or {name: SASRecSPRINT, compare_anyway: [train_mode]}: see "Like with like" below
    datasets: [ml-100k, {name: amazon-beauty, data_path: ../shared/datasets, config: {...}}]
    data_path: ../shared/datasets     # default data_path of datasets that name none
    seeds: [2020, 2021]
    config: {epochs: 1, metrics: [Recall, NDCG], topk: [10], valid_metric: NDCG@10}   # shared by every run
    sizes: [XXS, XS]                  # optional: the paper's size presets (scaling.SIZE_PRESETS)
    sweep: {n_layers: [1, 2]}         # optional: cartesian product of config values
    table: {metrics: [ndcg@10, recall@10], absolute_gain: [], alpha: 0.05}   # optional
    scaling: {metrics: [ndcg@10, averagepopularity@10]}                      # optional: draws plots

Config priority (lowest first): the model's yaml defaults, ``config``, the dataset's ``config``, the model's
``config``, the model's ``dataset_config`` for that dataset, the size preset, the sweep values, the seed.

Like with like: the table gives each SPRINT row its gain over its backbone's row (``SASRecSPRINT`` and
``SASRec++-SPRINT`` against the rows labelled ``SASRec`` and ``SASRec++``, same variant; see
:func:`recbole_sprint.benchmark.tables.backbone_of`), so two such rows must train under the same protocol: their
resolved configs (model yamls included, e.g. SASRecSPRINT's ``train_mode: full_sequence`` against RecBole's
SASRec in prefix mode) may differ only in the SPRINT keys (``sprint_*``) and the model class, on every dataset.
The baseline row that guarantees it is the SPRINT class with every weight 0 (``{name: SASRecSPRINT, label: SASRec,
config: {sprint_attn_weight: 0, sprint_ffn_weight: 0, sprint_emb_weight: 0}}``, which trains exactly like its
backbone). Anything else is an error naming the keys, unless one of the two entries says that the difference is
meant: ``compare_anyway: [key, ...]`` (these keys may differ) or ``compare_anyway: true`` (any key may).

A relative ``data_path`` is resolved against the spec file's folder first, then against the current
directory; the first that holds ``<name>/<name>.inter`` wins. ``ml-100k`` (inside the recbole wheel) and the
datasets RecBole can download (``recbole/properties/dataset/url.yaml``) need no files.
"""

import copy
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field

import yaml

from recbole_sprint.benchmark.scaling import SIZE_KEYS, SIZE_PRESETS, size_config

# keys of a 'models' entry: 'label' names the table row (default: the model name), e.g. the backbone baseline
# {name: SASRecSPRINT, label: SASRec, config: {sprint_attn_weight: 0, ...}} under a protocol RecBole's SASRec
# cannot train (train_mode: full_sequence); SPRINT at weight 0 trains exactly like its backbone.
# 'dataset_config' maps dataset names to config values for that dataset's runs of the entry only.
# 'compare_anyway' (true, or a list of config keys) lets the entry's row and the row the table compares it with
# (a SPRINT row and its backbone's) differ in more than the sprint_* keys (module docstring: "Like with like").
MODEL_KEYS = ("name", "label", "config", "dataset_config", "compare_anyway")
TOP_LEVEL_KEYS = ("name", "models", "datasets", "data_path", "seeds", "config", "sizes", "sweep", "table", "scaling")
TABLE_KEYS = ("metrics", "absolute_gain", "alpha")
SCALING_KEYS = ("metrics",)


class SpecError(ValueError):
    """A benchmark spec entry is invalid; the message names the entry."""


@dataclass
class Cell:
    """One run of the grid."""

    model: str
    dataset: str
    seed: int
    variant: dict  # size name (key "size") and sweep values
    config: dict  # everything passed to run_recbole_sprint except output locations
    data_path: str = None
    model_class: str = None  # the model class to train when ``model`` is a label (see MODEL_KEYS); None: ``model``

    @property
    def model_name(self):
        """The RecBole / plugin model class name to train."""
        return self.model_class or self.model

    @property
    def run_id(self):
        """Hash of model, dataset, seed, the resolved variant and the config (data_path excluded, so that a
        store stays valid when the datasets folder is reached from elsewhere)."""
        identity = {"model": self.model, "dataset": self.dataset, "seed": self.seed, "variant": self.variant,
                    "config": self.config}
        if self.model_class and self.model_class != self.model:
            identity["model_class"] = self.model_class
        return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def variant_label(self):
        return variant_label(self.variant)


def variant_label(variant):
    """``"XS, lr=0.001"`` for ``{"size": "XS", "learning_rate": 0.001}``; ``""`` for no variant."""
    parts = [variant["size"]] if "size" in variant else []
    parts += [f"{k}={v}" for k, v in variant.items() if k != "size"]
    return ", ".join(parts)


@dataclass
class Spec:
    name: str
    path: str
    models: list  # [(label, config dict)]; the label is the model name unless the entry sets 'label'
    datasets: list  # [(name, data_path or None, config dict)]
    seeds: list
    config: dict
    sizes: list = field(default_factory=list)
    sweep: dict = field(default_factory=dict)
    table: dict = field(default_factory=dict)
    scaling: dict = None
    model_classes: dict = field(default_factory=dict)  # label -> model class name
    model_dataset_configs: dict = field(default_factory=dict)  # label -> {dataset: config} ('dataset_config')
    compare_anyway: dict = field(default_factory=dict)  # label -> True or a set of config keys ('compare_anyway')

    def model_config(self, model, model_config, dataset):
        """The entry's config for ``dataset``: its ``config`` updated with its ``dataset_config[dataset]``."""
        return {**model_config, **self.model_dataset_configs.get(model, {}).get(dataset, {})}

    def variants(self):
        """Every combination of size preset and sweep values, as ordered dicts."""
        sizes = self.sizes or [None]
        keys = list(self.sweep)
        out = []
        for size in sizes:
            for values in itertools.product(*[self.sweep[k] for k in keys]):
                variant = {"size": size} if size else {}
                variant.update(zip(keys, values))
                out.append(variant)
        return out

    def cells(self):
        """The grid, ordered dataset > model > variant > seed."""
        cells = []
        for dataset, data_path, dataset_config in self.datasets:
            for model, model_config in self.models:
                for variant in self.variants():
                    for seed in self.seeds:
                        config = copy.deepcopy(self.config)
                        config.update(dataset_config)
                        config.update(self.model_config(model, model_config, dataset))
                        if "size" in variant:
                            config.update(size_config(variant["size"]))
                        config.update({k: v for k, v in variant.items() if k != "size"})
                        config["seed"] = seed
                        cells.append(Cell(model, dataset, seed, dict(variant), config, data_path,
                                          self.model_classes.get(model, model)))
        return cells


def split_names(value):
    """``"A, B"`` -> ``["A", "B"]`` (a list is taken as is, blanks dropped); ``None`` -> ``None`` (no filter)."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [str(part).strip() for part in parts if str(part).strip()]


def model_choices(spec):
    """What ``--models`` accepts: every label and every model name of the spec, in spec order, once each."""
    choices = []
    for label, _ in spec.models:
        for name in (label, spec.model_classes.get(label, label)):
            if name not in choices:
                choices.append(name)
    return choices


def select_cells(spec, models=None, datasets=None):
    """The cells of ``spec.cells()`` that the filters select, in grid order, unchanged (same run ids, so runs
    stored by a filtered call are skipped by an unfiltered one and the other way round).

    Args:
        models: labels or model names (a list or a comma-separated string); ``None``: every model. A model entry
            is selected when its label (the table row) or its model name (the class it trains) is listed: with
            ``{name: SASRecSPRINT, label: SASRec}`` and ``{name: SASRecSPRINT}`` in the spec, ``SASRecSPRINT``
            selects both entries and ``SASRec`` only the first.
        datasets: dataset names (a list or a comma-separated string); ``None``: every dataset.

    Raises:
        ValueError: naming the option (``--models`` / ``--datasets``), the names that match nothing and the
            allowed values.
    """
    models, datasets = split_names(models), split_names(datasets)
    cells = spec.cells()
    if models is not None:
        choices = model_choices(spec)
        _check_names("--models", "model", models, choices, spec)
        wanted = set(models)
        cells = [c for c in cells if c.model in wanted or c.model_name in wanted]
    if datasets is not None:
        choices = [name for name, _, _ in spec.datasets]
        _check_names("--datasets", "dataset", datasets, choices, spec)
        cells = [c for c in cells if c.dataset in set(datasets)]
    return cells


def _check_names(option, kind, names, choices, spec):
    if not names:
        raise ValueError(f"{option}: no {kind} given; choose from {', '.join(choices)}")
    unknown = [name for name in names if name not in choices]
    if unknown:
        listed = ", ".join(f"'{name}'" for name in unknown)
        raise ValueError(f"{option}: no {kind} {listed} in spec {spec.name}; choose from {', '.join(choices)}")


def load_spec(path, overrides=None):
    """Read and validate the spec at ``path``.

    Args:
        overrides: optional dict merged over the file's top level (``config`` is merged key by key), e.g. for
            a faster test copy of a shipped spec.

    Raises:
        SpecError: naming the first invalid entry.
    """
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a mapping with keys {', '.join(TOP_LEVEL_KEYS)}")
    for key, value in (overrides or {}).items():
        if key == "config" and isinstance(value, dict):
            raw["config"] = {**(raw.get("config") or {}), **value}
        elif value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return parse_spec(raw, path)


def parse_spec(raw, path="<spec>"):
    """Validate a spec given as a dict (see :func:`load_spec`)."""
    import recbole_sprint  # noqa: F401  (plugin metrics register on import)

    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise SpecError(f"{path}: unknown spec key(s) {unknown}; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    spec_dir = os.path.dirname(os.path.abspath(path)) if os.path.exists(str(path)) else os.getcwd()
    config = _mapping(raw.get("config"), "config")
    models = _models(raw.get("models"))  # [(label, config, model class name, dataset_config, compare_anyway)]
    spec = Spec(
        name=str(raw.get("name") or os.path.splitext(os.path.basename(str(path)))[0]),
        path=str(path),
        models=[(label, config) for label, config, _, _, _ in models],
        model_classes={label: name for label, _, name, _, _ in models},
        model_dataset_configs={label: by_dataset for label, _, _, by_dataset, _ in models if by_dataset},
        compare_anyway={label: anyway for label, _, _, _, anyway in models if anyway},
        datasets=_datasets(raw.get("datasets"), raw.get("data_path"), spec_dir),
        seeds=_seeds(raw.get("seeds")),
        config=config,
        sizes=_sizes(raw.get("sizes")),
        sweep=_sweep(raw.get("sweep")),
        table=_section(raw.get("table"), "table", TABLE_KEYS),
        scaling=None if raw.get("scaling") is None else _section(raw.get("scaling"), "scaling", SCALING_KEYS),
    )
    _check_dataset_configs(spec)
    _check_unique_cells(spec)
    if spec.sizes:
        clash = sorted(set(spec.sweep) & set(SIZE_KEYS))
        if clash:
            raise SpecError(f"spec entry 'sweep.{clash[0]}': set by the size presets in 'sizes' as well")
    _check_metrics(spec)
    _check_configs(spec)
    return spec


def _mapping(value, entry):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"spec entry '{entry}' must be a mapping, got {value!r}")
    return dict(value)


def _section(value, entry, allowed):
    value = _mapping(value, entry)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise SpecError(f"spec entry '{entry}': unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    return value


def _named(item, entry):
    """``"X"`` or ``{name: X, config: {...}, ...}`` -> (name, dict of the other keys)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return item["name"], {k: v for k, v in item.items() if k != "name"}
    raise SpecError(f"spec entry '{entry}' must be a name or a mapping with 'name', got {item!r}")


def _models(value):
    from recbole_sprint.utils import get_model

    if not isinstance(value, list) or not value:
        raise SpecError("spec entry 'models' must be a non-empty list of model names")
    models = []
    for i, item in enumerate(value):
        name, extra = _named(item, f"models[{i}]")
        unknown = sorted(set(extra) - set(MODEL_KEYS))
        if unknown:
            raise SpecError(f"spec entry 'models[{i}]' ({name}): unknown key(s) {unknown}; allowed: "
                            f"{', '.join(MODEL_KEYS)}")
        label = extra.get("label", name)
        if not isinstance(label, str) or not label:
            raise SpecError(f"spec entry 'models[{i}].label' must be a non-empty string, got {label!r}")
        try:
            get_model(name)
        except ValueError as error:
            raise SpecError(f"spec entry 'models[{i}]': {error}") from None
        except ImportError as error:  # RecBole's lookup imports optional libraries (lightgbm, xgboost) on a miss
            raise SpecError(f"spec entry 'models[{i}]': unknown model [{name}] (neither a recbole_sprint nor a "
                            f"RecBole model; the lookup ended with: {error})") from None
        by_dataset = _mapping(extra.get("dataset_config"), f"models[{i}].dataset_config")
        by_dataset = {d: _mapping(c, f"models[{i}].dataset_config.{d}") for d, c in by_dataset.items()}
        anyway = _compare_anyway(extra.get("compare_anyway", False), f"models[{i}].compare_anyway")
        models.append((label, _mapping(extra.get("config"), f"models[{i}].config"), name, by_dataset, anyway))
    labels = [label for label, _, _, _, _ in models]
    if len(set(labels)) != len(labels):
        raise SpecError(f"spec entry 'models' lists a model (label) twice: {labels}")
    return models


def _compare_anyway(value, entry):
    """``compare_anyway``: ``False`` (the default), ``True`` or a non-empty list of config keys (as a set)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list) and value and all(isinstance(key, str) and key for key in value):
        return set(value)
    raise SpecError(f"spec entry '{entry}' must be true, false or a non-empty list of config keys, got {value!r}")


def _check_dataset_configs(spec):
    """Every dataset named in a model entry's 'dataset_config' is one of the spec's datasets."""
    names = [name for name, _, _ in spec.datasets]
    for i, (model, _) in enumerate(spec.models):
        for dataset in spec.model_dataset_configs.get(model, {}):
            if dataset not in names:
                raise SpecError(f"spec entry 'models[{i}].dataset_config' ({model}): no dataset {dataset} in "
                                f"'datasets'; choose from {', '.join(names)}")


def _repeated(values):
    """The first value that occurs twice in ``values`` (compared as JSON), or ``None``."""
    seen = set()
    for value in values:
        key = json.dumps(value, sort_keys=True, default=str)
        if key in seen:
            return value
        seen.add(key)
    return None


def _check_unique_cells(spec):
    """No run of the grid twice: a dataset, size or sweep value listed twice would train the same cells again."""
    names = [name for name, _, _ in spec.datasets]
    if _repeated(names) is not None:
        raise SpecError(f"spec entry 'datasets' lists [{_repeated(names)}] twice: {names}; each of its runs would "
                        "train twice")
    if _repeated(spec.sizes) is not None:
        raise SpecError(f"spec entry 'sizes' lists [{_repeated(spec.sizes)}] twice: {spec.sizes}")
    for key, values in spec.sweep.items():
        if _repeated(values) is not None:
            raise SpecError(f"spec entry 'sweep.{key}' lists [{_repeated(values)}] twice: {values}")
    seen = {}
    for cell in spec.cells():
        if cell.run_id in seen:
            raise SpecError(f"spec lists the same run twice: {cell.model} on {cell.dataset} "
                            f"({cell.variant_label or 'no variant'}, seed {cell.seed}); remove the repeated entry")
        seen[cell.run_id] = cell


def _recbole_url_datasets():
    import recbole

    with open(os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")) as f:
        return set(yaml.safe_load(f))


def resolve_data_path(data_path, name, spec_dir):
    """The folder holding ``<name>/<name>.inter``: ``data_path`` as is if absolute, else against the spec's
    folder, then the current directory. ``None`` when no candidate holds the file."""
    if data_path is None:
        return None
    candidates = [data_path] if os.path.isabs(data_path) else [os.path.join(spec_dir, data_path), data_path]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, name, f"{name}.inter")):
            return os.path.abspath(candidate)
    return None


def _datasets(value, default_data_path, spec_dir):
    if not isinstance(value, list) or not value:
        raise SpecError("spec entry 'datasets' must be a non-empty list of dataset names")
    datasets = []
    for i, item in enumerate(value):
        name, extra = _named(item, f"datasets[{i}]")
        unknown = sorted(set(extra) - {"config", "data_path"})
        if unknown:
            raise SpecError(f"spec entry 'datasets[{i}]' ({name}): unknown key(s) {unknown}; "
                            "allowed: name, data_path, config")
        data_path = extra.get("data_path", default_data_path)
        resolved = resolve_data_path(data_path, name, spec_dir)
        if resolved is None and name != "ml-100k" and name not in _recbole_url_datasets():
            where = (f"data_path '{data_path}' (tried against {spec_dir} and {os.getcwd()})" if data_path
                     else "no data_path given")
            raise SpecError(f"spec entry 'datasets[{i}]': unknown dataset [{name}]: no {name}/{name}.inter under "
                            f"{where}, and it is neither ml-100k nor a dataset RecBole can download")
        datasets.append((name, resolved, _mapping(extra.get("config"), f"datasets[{i}].config")))
    return datasets


def _seeds(value):
    if not isinstance(value, list) or not value or not all(isinstance(s, int) for s in value):
        raise SpecError(f"spec entry 'seeds' must be a non-empty list of integers, got {value!r}")
    if len(set(value)) != len(value):
        raise SpecError(f"spec entry 'seeds' repeats a seed: {value}")
    return list(value)


def _sizes(value):
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"spec entry 'sizes' must be a list of size names ({', '.join(SIZE_PRESETS)})")
    for i, name in enumerate(value):
        if name not in SIZE_PRESETS:
            raise SpecError(f"spec entry 'sizes[{i}]': unknown model size [{name}]; allowed: {', '.join(SIZE_PRESETS)}")
    return list(value)


def _sweep(value):
    sweep = _mapping(value, "sweep")
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"spec entry 'sweep.{key}' must be a non-empty list of values, got {values!r}")
    return sweep


def metric_names(config):
    """The metric names of a config dict (RecBole accepts a string or a list)."""
    metrics = config.get("metrics", ["Recall", "MRR", "NDCG", "Hit", "Precision"])
    return [metrics] if isinstance(metrics, str) else list(metrics)


def _check_metrics(spec):
    """Every configured metric is registered; valid_metric and the table/scaling columns are produced."""
    from recbole.evaluator.register import metrics_dict

    configs = [("config", spec.config)]
    configs += [(f"datasets[{i}].config", c) for i, (_, _, c) in enumerate(spec.datasets) if "metrics" in c]
    configs += [(f"models[{i}].config", c) for i, (_, c) in enumerate(spec.models) if "metrics" in c]
    configs += [(f"models[{i}].dataset_config.{d}", c) for i, (m, _) in enumerate(spec.models)
                for d, c in spec.model_dataset_configs.get(m, {}).items() if "metrics" in c]
    produced = set()
    for entry, config in configs:
        names = metric_names(config)
        for j, name in enumerate(names):
            if str(name).lower() not in metrics_dict:
                raise SpecError(f"spec entry '{entry}.metrics[{j}]': unknown metric [{name}]; registered metrics: "
                                f"{', '.join(sorted(metrics_dict))}")
        produced |= {str(n).lower() for n in names}
        valid = config.get("valid_metric")
        if valid and str(valid).split("@")[0].lower() not in {str(n).lower() for n in names}:
            raise SpecError(f"spec entry '{entry}.valid_metric': [{valid}] is not among its metrics {names}")
    topk = spec.config.get("topk", [10])  # RecBole's default
    topks = {str(k) for k in ([topk] if isinstance(topk, int) else topk)}
    per_dataset = [c for by_dataset in spec.model_dataset_configs.values() for c in by_dataset.values()]
    for c in [c for _, _, c in spec.datasets] + [c for _, c in spec.models] + per_dataset:
        if "topk" in c:
            topks |= {str(k) for k in ([c["topk"]] if isinstance(c["topk"], int) else c["topk"])}
    for section, keys in (("table", ("metrics", "absolute_gain")), ("scaling", ("metrics",))):
        for key in keys:
            for j, column in enumerate((getattr(spec, section) or {}).get(key) or []):
                base = str(column).split("@")[0].lower()
                if base not in metrics_dict:
                    raise SpecError(f"spec entry '{section}.{key}[{j}]': unknown metric [{column}]; registered "
                                    f"metrics: {', '.join(sorted(metrics_dict))}")
                if key == "metrics" and base not in produced:
                    raise SpecError(f"spec entry '{section}.{key}[{j}]': [{column}] is not among config.metrics")
                if key == "metrics" and "@" in str(column) and str(column).split("@")[1] not in topks:
                    raise SpecError(f"spec entry '{section}.{key}[{j}]': [{column}] needs {column.split('@')[1]} "
                                    f"in config.topk {sorted(topks)}")


def _check_configs(spec):
    """Build RecBole's Config of every (model, dataset) pair (first size, no sweep values), so that config errors show up
    before anything trains; sweep keys must be config keys of at least one model (a typo would silently
    do nothing)."""
    from recbole_sprint.config import Config, recbole_argv_cleared

    known = set(SIZE_KEYS)
    variant_config = size_config(spec.sizes[0]) if spec.sizes else {}  # sweep values left out: see below
    resolved = {}  # (model label, dataset) -> final config dict, for the like-with-like check
    for i, (model, model_config) in enumerate(spec.models):
        for j, (dataset, data_path, dataset_config) in enumerate(spec.datasets):
            config_dict = {**spec.config, **dataset_config, **spec.model_config(model, model_config, dataset),
                           **variant_config, "seed": spec.seeds[0]}
            if data_path:
                config_dict["data_path"] = data_path
            try:
                with recbole_argv_cleared():  # a spec is data: its configs never read the caller's command line
                    config = Config(model=spec.model_classes.get(model, model), dataset=dataset,
                                    config_dict=config_dict)
            except (ValueError, KeyError, TypeError, NotImplementedError) as error:
                raise SpecError(f"spec entries 'models[{i}]' ({model}) x 'datasets[{j}]' ({dataset}): RecBole "
                                f"rejects the config: {error}") from None
            known |= set(config.final_config_dict)
            resolved[model, dataset] = config.final_config_dict
    _check_like_with_like(spec, resolved)
    for key in spec.sweep:
        if key not in known:
            raise SpecError(f"spec entry 'sweep.{key}': [{key}] is not a config key of any of the models "
                            f"{[m for m, _ in spec.models]}")


# keys that may differ between a SPRINT row and its backbone's row: the SPRINT options, and what names the model
SPRINT_KEY_PREFIX = "sprint_"
MODEL_IDENTITY_KEYS = ("model",)


def config_differences(config, other):
    """``{key: (value in config, value in other)}`` for every key whose values differ (a missing key: ``"unset"``),
    leaving out the SPRINT keys (``sprint_*``) and the model name."""
    missing = "unset"
    differences = {}
    for key in sorted(set(config) | set(other)):
        if key.startswith(SPRINT_KEY_PREFIX) or key in MODEL_IDENTITY_KEYS:
            continue
        a, b = config.get(key, missing), other.get(key, missing)
        try:
            same = bool(a == b)
        except Exception:  # e.g. arrays: compare their text
            same = repr(a) == repr(b)
        if not same:
            differences[key] = (a, b)
    return differences


def compared_pairs(spec):
    """``[(i, SPRINT label, j, backbone label)]``: the model entries whose rows the table compares
    (:func:`recbole_sprint.benchmark.tables.backbone_of`), by their positions in ``models``."""
    from recbole_sprint.benchmark.tables import backbone_of

    labels = [label for label, _ in spec.models]
    return [(i, label, labels.index(backbone_of(label)), backbone_of(label))
            for i, label in enumerate(labels) if backbone_of(label) in labels]


def _check_like_with_like(spec, resolved):
    """A SPRINT row and its backbone's row differ only in ``sprint_*`` keys (module docstring: "Like with like")."""
    for i, label, j, backbone in compared_pairs(spec):
        anyway = [spec.compare_anyway.get(label, False), spec.compare_anyway.get(backbone, False)]
        if True in anyway:
            continue
        allowed = set().union(*[keys for keys in anyway if keys])
        for dataset, _, _ in spec.datasets:
            differences = config_differences(resolved[label, dataset], resolved[backbone, dataset])
            unexpected = {key: values for key, values in differences.items() if key not in allowed}
            if unexpected:
                shown = "; ".join(f"{key}: {a!r} vs {b!r}" for key, (a, b) in list(unexpected.items())[:12])
                more = f" (and {len(unexpected) - 12} more)" if len(unexpected) > 12 else ""
                raise SpecError(
                    f"spec entries 'models[{i}]' ({label}) and 'models[{j}]' ({backbone}) on {dataset}: the table "
                    f"gives {label} its gain over {backbone}, but their configs differ in more than the SPRINT keys "
                    f"({label} vs {backbone}): "
                    f"{shown}{more}. Compare like with like: make the baseline the SPRINT class with every weight 0 "
                    f"({{name: {spec.model_classes.get(label, label)}, label: {backbone}, config: {{sprint_attn_weight: "
                    f"0.0, sprint_ffn_weight: 0.0, sprint_emb_weight: 0.0}}}}) or give both entries the same values; "
                    f"if the difference is meant, add compare_anyway: [{', '.join(unexpected)}] (or true) to one of "
                    f"the two entries"
                )
