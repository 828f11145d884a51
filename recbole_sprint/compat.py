"""Every workaround that RecBole 1.2.1 needs on today's stack, in one place.

RecBole 1.2.1 (the newest release) predates torch 2.6, NumPy 2 and several RecBole bugs that are still
open upstream. Nothing outside this module works around RecBole; each shim names the symptom, the cause
and the RecBole location it fixes.

=====  ==========================================================  =============================================
shim   symptom                                                     fix
=====  ==========================================================  =============================================
1      ``UnpicklingError: Weights only load failed`` when RecBole   :class:`CompatTrainerMixin` saves weights
       reloads its own best checkpoint / resumes (torch >= 2.6      and the config as plain data and reads them
       defaults ``weights_only=True``; trainer.py:323,583); and     with ``weights_only=True``
       loading RecBole's pickled ``{"config": Config}`` with        (:mod:`recbole_sprint.checkpoint`); a pickled
       ``weights_only=False`` runs any code a downloaded file       checkpoint loads only with
       names (trainer.py:308 saves it so)                          ``trust_pickle=True``
2      CPU training 1.15x and GPU training 2.3x slower than it      :func:`disable_anomaly_detection` right after
       should be: ``sine.py:25`` switches autograd anomaly          RecBole's sequential models are imported
       detection on for the whole process at import
3      ``AttributeError: 'int' object has no attribute 'cpu'`` for  :class:`CompatCollector` moves only tensors
       ItemCoverage, AveragePopularity, TailPercentage,
       GiniIndex (collector.py:227; RecBole issue #2194)
4      ``np.float_ was removed in the NumPy 2.0 release``           :func:`numpy_aliases`, called by the plugin
       (configurator.py:630) and later uses of ``np.float`` etc.    Config instead of RecBole's aliasing
5      ``RuntimeError: Default process group has not been           :func:`_download_without_barrier`: no
       initialized`` after a successful single-process dataset     ``barrier()`` when no process group exists
       download (dataset.py:252; RecBole issue #1989)
6      third-party deprecation warnings that RecBole triggers      :func:`install_warning_filters`
7      CPU training ~1.7x slower than needed: RecBole's            :func:`fused_gelu`: the same exact-erf GELU
       ``FeedForward.gelu`` (layers.py:512) is a hand-written       through ``torch.nn.functional.gelu`` (one
       erf formula (5 elementwise kernels + their backward)         fused kernel); identical math
8      ``ValueError: DistributedDataParallel device_ids and         :func:`ddp_on_cpu`: no ``device_ids`` for a
       output_device arguments only work with single-device/       model on the CPU (the plugin's gloo
       multiple-device GPU modules or CPU modules`` in a            multi-process runs, ``ddp_backend``)
       multi-process run on the CPU (trainer.py:62 always passes
       ``device_ids=[local_rank]``)
9      multi-process runs report other values than one process      :func:`unsharded_eval_loader` (called by
       for metrics of the whole recommendation set (TailCoverage,  ``recbole_sprint.data.data_preparation``):
       ItemCoverage, GiniIndex, SpectralCollapse): each process    every process evaluates every user, so
       evaluates 1/N of the users and RecBole averages the         RecBole's average is of N equal values
       processes' values (trainer.py:624 ``_map_reduce``)
10     multi-process runs: ``PytorchStreamReader failed reading    :class:`CompatTrainerMixin`: every process
       zip archive`` (or file not found) when the test reloads     takes rank 0's file name, and waits at a
       the best checkpoint: processes > 0 read the file while      barrier until rank 0 has written the file
       rank 0 still writes it, and name it by their own clock
       (trainer.py:132,296)
11     multi-process runs: ``FileExistsError`` for the checkpoint  :func:`race_free_ensure_dir`:
       or log folder (``ensure_dir`` tests, then creates:           ``os.makedirs(..., exist_ok=True)``
       utils.py:51, two processes pass the test)
12     under pandas >= 3 (or pandas' copy-on-write mode) missing   :func:`fill_nan_by_assignment`: the token and
       token and float feature values stay NaN, silently           float fields are filled by assignment first
       (``feat[field].fillna(..., inplace=True)`` fills a copy:    (same values: 0 / the field's mean)
       dataset.py:648,650; ``ChainedAssignmentError`` warning)
13     ``AttributeError: 'dok_matrix' object has no attribute      :func:`dok_update`: ``_update`` defined again
       '_update'`` when LightGCN, NGCF, NCL, GCMC, SpectralCF,     as it was (``dict.update`` of the entries,
       KGIN or MCCLK build their adjacency matrix (scipy's DOK     unchecked), on scipy's own entry dict
       rework dropped the private method; seen with scipy 1.17
       and 1.18; lightgcn.py:111, ngcf.py:110,
       ncl.py:131, gcmc.py:174, spectralcf.py:123, kgin.py:356,
       mcclk.py:425)
14     a config value such as ``__import__('os').system(...)``      :func:`literal_config_values`, called by the
       from the command line, a spec or ``.hyper`` file runs:      plugin Config instead: ``ast.literal_eval``
       RecBole ``eval()``s every string of a config dict and the   (numbers, lists, dicts, ``None``, ...), else
       command line (configurator.py:131                          ``true``/``false``, else the plain string;
       ``_convert_config_dict``); a missing or malformed           never evaluated. :func:`load_config_files`:
       ``--config_files`` yaml ends in a bare ``FileNotFoundError``  plain-data yaml (a SafeLoader with RecBole's
       or a YAML error about ``"<unicode string>"``                float resolver), errors name the file and
       (configurator.py:143); the yaml loader is ``FullLoader``     line
       (python tags), changed process-wide (configurator.py:106)
15     a NaN timestamp silently becomes the column mean            :func:`check_atomic_files`: RecBole's
       (dataset.py:650), reordering the user's history;            ``_load_feat`` and ``_data_processing``
       duplicate (user, item, time) rows train silently, rows      wrapped; order field (TIME_FIELD) missing or
       with NaN ids are dropped with a log line only; a            non-finite: error naming file, rows and
       malformed ``.inter`` ends in ``not enough values to         field; NaN ids and duplicates: a warning
       unpack`` / ``Type tokn ... is not supported`` / ``Unable    (``DataWarning``) with counts; header and
       to convert column`` (dataset.py:455-497); a TIME_FIELD      value errors name the file and column; a
       the file lacks: ``KeyError: 'timestamp'``                   TIME_FIELD the file lacks: a clear error
16     ``ValueError: train_neg_sample_args [...] should be None    :func:`no_negatives_for_ce`, called by the
       when the loss_type is CE`` for ``--model=SASRec`` (and      plugin Config: a sequential CE model gets
       every sequential model whose yaml says ``loss_type: CE``):  ``train_neg_sample_args: None`` unless the
       overall.yaml samples a negative for every model and         user set that key (an explicit contradiction
       configurator.py:342 rejects that with CE                    still fails RecBole's check)
17     raw ANSI colour codes (``\x1b[1;34m``) in every log line   :func:`plain_console_off_a_terminal`: after
       written to a file or a pipe (``> run.log``, Ray's trial     RecBole's ``init_logger``, a console handler
       logs, CI): RecBole's console handler always colours         whose stream is not a terminal gets a plain
       (logger.py:94 ``ColoredFormatter``, ``set_color`` in the    formatter and RecBole's own
       messages); only its file handler strips them                ``RemoveColorFilter``
18     under pandas >= 3 a token sequence field (``item_id_list``  :func:`series_len_per_row`: inside those
       of pre-split benchmark files, ``token_seq`` side features)  RecBole methods ``Series.agg(len)`` is
       fails to load: ``ValueError: Length of values (1) does not  ``Series.map(len)`` again (pandas < 3's
       match length of index (N)``, and a pre-split sequential     result); other ``agg`` calls unchanged
       file's ``item_length`` is the row count (``index N is out
       of bounds`` in ``gather_indexes``): pandas 3's
       ``Series.agg(len)`` is the Series' length, no longer per
       row (dataset.py:1217 ``_remap``, sequential_dataset.py:165;
       float sequences dataset.py:712,792,809; kg_dataset.py:316)
19     BERT4Rec's validation takes minutes on the GPU (amazon-     :func:`vectorised_bert4rec_mask`: the
       beauty, H200 beside other runs: 90-105 s, ~4 ms a user;     ``[MASK]`` written by one ``scatter_`` (same
       ml-1m-3k 10 s; HSTU's 1.5 s): ``reconstruct_test_data``     tensor; RecBole's BERT4Rec and every
       writes each row's ``[MASK]`` in a Python loop over the      subclass). CPU, 4096 rows: 11.8 -> 0.16 ms;
       users, indexing by a 0-d device tensor each time (a         the GPU time is inferred from the per-user
       device sync per user; bert4rec.py:117)                      scaling, not re-timed yet
=====  ==========================================================  =============================================

:func:`apply` installs the process-wide shims (2, 4, 5, 6, 7, 8, 11, 12, 13, 15, 17, 18, 19); it runs once when ``recbole_sprint`` is
imported. Shims 1, 3 and 10 are installed per trainer through :class:`CompatTrainerMixin`; shim 9 by the
plugin's ``data_preparation``; shim 14 by the plugin's Config.
"""

import ast
import copy
import functools
import os
import re
import warnings

import numpy as np
import torch
import yaml
from recbole.evaluator.collector import Collector
from recbole.utils import set_color
from torch.nn.parallel import DistributedDataParallel

from recbole_sprint.checkpoint import checkpoint_state, load_checkpoint

__all__ = [
    "apply",
    "numpy_aliases",
    "disable_anomaly_detection",
    "CompatCollector",
    "CompatTrainerMixin",
    "install_warning_filters",
    "fused_gelu",
    "ddp_on_cpu",
    "unsharded_eval_loader",
    "race_free_ensure_dir",
    "fill_nan_by_assignment",
    "dok_update",
    "literal_config_values",
    "load_config_files",
    "ConfigYamlLoader",
    "check_atomic_files",
    "no_negatives_for_ce",
    "series_len_per_row",
    "vectorised_bert4rec_mask",
]

# Shim 4 -------------------------------------------------------------------------------------------
# Aliases that RecBole (metrics.py, interaction.py, dataset.py) still uses; NumPy 2 removed some of them.
_NUMPY_ALIASES = {
    "bool": "bool_",
    "int": "int_",
    "float": "float64",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "long": "int_",
    "unicode": "str_",
}


def numpy_aliases():
    """Define the NumPy aliases RecBole uses, without touching ones NumPy itself defines."""
    for old, new in _NUMPY_ALIASES.items():
        if old not in np.__dict__:
            setattr(np, old, getattr(np, new))


# Shim 2 -------------------------------------------------------------------------------------------
def disable_anomaly_detection():
    """Import RecBole's sequential models (whose import enables anomaly mode), then switch it off."""
    import recbole.model.sequential_recommender  # noqa: F401  (sine.py:25 runs here)

    torch.autograd.set_detect_anomaly(False)


# Shim 3 -------------------------------------------------------------------------------------------
class CompatCollector(Collector):
    """RecBole's Collector, except that ``get_data_struct`` moves only tensors to the CPU.

    RecBole calls ``.cpu()`` on every entry, including ``data.num_items`` (an int) and
    ``data.count_items`` (a Counter), so every popularity metric crashes.
    """

    def get_data_struct(self):
        for key, value in self.data_struct._data_dict.items():
            if isinstance(value, torch.Tensor):
                self.data_struct._data_dict[key] = value.cpu()
        returned_struct = copy.deepcopy(self.data_struct)
        for key in self.per_evaluation_keys():
            if key in self.data_struct:
                del self.data_struct[key]
        return returned_struct

    def per_evaluation_keys(self):
        """Keys collected anew at every evaluation (RecBole's hard-coded list, collector.py:229)."""
        return ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]


def _saves_weights(trainer):
    from recbole.trainer import Trainer

    return isinstance(trainer, Trainer)


class CompatTrainerMixin:
    """Mix into any RecBole trainer: shims 1, 3 and 10.

    ``recbole_sprint.utils.get_trainer`` builds ``Compat<RecBoleTrainer>`` classes from it, so RecBole's
    special trainers (pre-training, KG, ...) get the same fixes.
    """

    collector_class = CompatCollector
    trust_pickle = False  # shim 1: True lets evaluate() read a pickled (RecBole / legacy) checkpoint

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_collector = self.collector_class(config)
        if not config["single_spec"]:  # shim 10: one checkpoint file for all processes, rank 0's
            names = [self.saved_model_file]
            torch.distributed.broadcast_object_list(names, src=0)
            self.saved_model_file = names[0]

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not _saves_weights(self):  # RecBole's decision-tree trainers save a file name, not weights
            return super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        if self.config["single_spec"] or self.config["local_rank"] == 0:  # as RecBole: rank 0 writes
            torch.save(checkpoint_state(self, epoch), saved_model_file)  # shim 1: plain data, no pickled objects
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
        if not self.config["single_spec"]:  # shim 10: no process reads the file before it is complete
            torch.distributed.barrier()

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's ``evaluate``; the checkpoint is read by :func:`recbole_sprint.checkpoint.load_checkpoint`
        (``weights_only=True``; a pickled one only if the trainer's ``trust_pickle`` is True)."""
        if eval_data and load_best_model and _saves_weights(self):
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, map_location=self.device, trust_pickle=self.trust_pickle)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
            load_best_model = False
        return super().evaluate(
            eval_data, load_best_model=load_best_model, model_file=model_file, show_progress=show_progress
        )

    def resume_checkpoint(self, resume_file, trust_pickle=None):
        """RecBole's ``resume_checkpoint`` through :func:`recbole_sprint.checkpoint.load_checkpoint` (shim 1); a
        pickled checkpoint needs ``trust_pickle=True`` (default: the trainer's ``trust_pickle``)."""
        resume_file = str(resume_file)
        trust = self.trust_pickle if trust_pickle is None else trust_pickle
        checkpoint = load_checkpoint(resume_file, map_location=self.device, trust_pickle=trust)
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            self.logger.warning(
                "Architecture configuration given in config file is different from that of checkpoint. "
                "This may yield an exception while state_dict is being loaded."
            )
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")


# Shim 5 -------------------------------------------------------------------------------------------
def _download_without_barrier(original_download):
    @functools.wraps(original_download)
    def _download(self):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return original_download(self)
        barrier = torch.distributed.barrier
        torch.distributed.barrier = lambda *args, **kwargs: None
        try:
            return original_download(self)
        finally:
            torch.distributed.barrier = barrier

    _download.recbole_sprint_shim = True
    return _download


def _patch_dataset_download():
    from recbole.data.dataset.dataset import Dataset

    if not getattr(Dataset._download, "recbole_sprint_shim", False):
        Dataset._download = _download_without_barrier(Dataset._download)


# Shim 6 -------------------------------------------------------------------------------------------
_IGNORED_WARNINGS = [
    # (message regex, category): each is raised inside RecBole or one of its pinned dependencies
    (r"pkg_resources is deprecated", UserWarning),  # ray/_private/parameter.py:4
    (r".*np\.bool8.*", DeprecationWarning),  # ray/tune/logger/tensorboardx.py:41
    (r"A value is trying to be set on a copy of", FutureWarning),  # recbole dataset.py:648,650 (pandas 2)
    # pandas 3's ChainedAssignmentError (a Warning) for the same lines, whose fill shim 12 has already done
    (r"A value is being set on a copy of a DataFrame or Series through chained assignment", Warning),
    (r"distutils Version classes are deprecated", DeprecationWarning),  # thop/profile.py
    (r".*torch\.cuda\.amp\.GradScaler", FutureWarning),  # recbole trainer.py:235
]


def install_warning_filters():
    for message, category in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    # Python >= 3.12 compiles RecBole's sources with "SyntaxWarning: invalid escape sequence '\p'" (docstrings of
    # dien.py:394,439), printed on stderr by every process that finds no cached bytecode (PYTHONDONTWRITEBYTECODE,
    # a read-only install); compile-time warnings are matched by the file's path
    warnings.filterwarnings("ignore", message=r"invalid escape sequence", category=SyntaxWarning,
                            module=r".*recbole[/\\]")
    # pandas 3's Pandas4Warning for RecBole's own inplace=True calls (dataset.py:834,939,1065,1104; hundreds in a
    # test run): only where RecBole makes the call, so the plugin's own code would still be warned
    warnings.filterwarnings("ignore", message=r"The inplace keyword in \w+\.\w+ is deprecated", category=Warning,
                            module=r"recbole\.")


# Shim 7 -------------------------------------------------------------------------------------------
def _fused_gelu(self, x):
    """GELU with the exact erf form, ``x * 0.5 * (1 + erf(x / sqrt(2)))``, as one fused kernel."""
    return torch.nn.functional.gelu(x)


def fused_gelu():
    """Make RecBole's ``FeedForward`` (SASRec, BERT4Rec, ...) use ``F.gelu``: same function, one kernel.

    ``FeedForward.get_hidden_act`` binds ``self.gelu`` at construction, so models built after this call use
    it. Measured on 2 CPU cores (spec recbole.md §2): SASRec ml-100k 168 -> 101-110 s/epoch, same loss.
    """
    from recbole.model.layers import FeedForward

    FeedForward.gelu = _fused_gelu


# Shim 8 -------------------------------------------------------------------------------------------
def _distributed_data_parallel(module, device_ids=None, **kwargs):
    """``DistributedDataParallel`` as RecBole's trainer calls it, without ``device_ids`` for a CPU module."""
    if next(module.parameters()).device.type == "cpu":
        device_ids = None
    return DistributedDataParallel(module, device_ids=device_ids, **kwargs)


def ddp_on_cpu():
    """Let RecBole's ``AbstractTrainer`` wrap a CPU model in DDP (multi-process runs with gloo)."""
    import recbole.trainer.trainer

    recbole.trainer.trainer.DistributedDataParallel = _distributed_data_parallel


# Shim 9 -------------------------------------------------------------------------------------------
def unsharded_eval_loader(config, eval_loader):
    """``eval_loader`` of a multi-process run, rebuilt to serve every evaluation row in every process.

    RecBole gives each process 1/N of the users (a ``DistributedSampler``, padded with repeated users to equal
    shares) and averages the processes' metric values, weighted by their user counts: exact for per-user means
    (NDCG, Hit) up to the padding, not for metrics of the whole recommendation set. Measured on ml-100k, two
    gloo processes, one checkpoint: TailCoverage@10 .2683 sharded against .3361 in one process. Unsharded, each
    process computes the single-process values. Evaluation takes as long as in one process.
    """
    config["single_spec"] = True  # read once, by AbstractDataLoader.__init__: whether to shard
    try:
        return type(eval_loader)(config, eval_loader._dataset, eval_loader._sampler, shuffle=False)
    finally:
        config["single_spec"] = False


# Shim 11 ------------------------------------------------------------------------------------------
def _ensure_dir(dir_path):
    """Make sure the directory exists; safe when several processes create it at once."""
    os.makedirs(dir_path, exist_ok=True)


def race_free_ensure_dir():
    """Replace RecBole's ``ensure_dir`` in every module that imported it."""
    import recbole.data.utils
    import recbole.trainer.trainer
    import recbole.utils
    import recbole.utils.logger
    import recbole.utils.utils

    for module in (recbole.utils.utils, recbole.utils, recbole.utils.logger, recbole.trainer.trainer, recbole.data.utils):
        module.ensure_dir = _ensure_dir


# Shim 12 ------------------------------------------------------------------------------------------
def _fill_nan_by_assignment(original_fill_nan):
    @functools.wraps(original_fill_nan)
    def _fill_nan(self):
        from recbole.utils import FeatureType

        for feat_name in self.feat_name_list:
            feat = getattr(self, feat_name)
            for field in feat:
                if self.field2type[field] == FeatureType.TOKEN:
                    feat[field] = feat[field].fillna(value=0)
                elif self.field2type[field] == FeatureType.FLOAT:
                    feat[field] = feat[field].fillna(value=feat[field].mean())
        return original_fill_nan(self)  # its own fills now find nothing; it still handles sequence fields

    _fill_nan.recbole_sprint_shim = True
    return _fill_nan


def fill_nan_by_assignment():
    """Make RecBole's ``Dataset._fill_nan`` fill token and float fields under copy-on-write pandas."""
    from recbole.data.dataset.dataset import Dataset

    if not getattr(Dataset._fill_nan, "recbole_sprint_shim", False):
        Dataset._fill_nan = _fill_nan_by_assignment(Dataset._fill_nan)


# Shim 13 ------------------------------------------------------------------------------------------
def _dok_update(self, data):
    """scipy < 1.12's ``dok_matrix._update``: add ``{(row, col): value}`` entries without checking them."""
    self._dict.update(data)


def dok_update():
    """Give scipy's DOK matrices back the private ``_update`` that RecBole's graph models call.

    Current scipy (seen: 1.17, 1.18) keeps a DOK matrix's entries in ``self._dict`` and has no ``_update``; its public ``update`` checks every key in Python (slow for RecBole's million-entry
    adjacency dicts). RecBole's keys are in range by construction (user and item ids), as before.
    """
    import scipy.sparse

    for cls in (scipy.sparse.dok_matrix, getattr(scipy.sparse, "dok_array", None)):
        if cls is not None and not hasattr(cls, "_update"):
            cls._update = _dok_update


# Shim 14 ------------------------------------------------------------------------------------------
def literal_value(text):
    """A config string as a Python literal (``ast.literal_eval``: numbers, strings, lists, tuples, dicts, ``None``,
    booleans), else ``True``/``False`` for ``true``/``false`` (any case), else the string itself. Nothing is
    evaluated: ``__import__('os').system('...')`` stays that string."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        lowered = text.strip().lower()
        return {"true": True, "false": False}.get(lowered, text)
    if value is not None and not isinstance(value, (str, int, float, list, tuple, dict, bool)):
        return text  # a set, bytes or complex number: kept as written, as RecBole keeps non-config types
    return value


def literal_config_values(config_dict):
    """RecBole's ``Config._convert_config_dict`` without ``eval``: every string value through :func:`literal_value`."""
    for key, value in config_dict.items():
        if isinstance(value, str):
            config_dict[key] = literal_value(value)
    return config_dict


class ConfigYamlLoader(yaml.SafeLoader):
    """Plain-data yaml (no python tags), with RecBole's resolver for floats such as ``1e-3`` (configurator.py:106,
    which adds it to ``yaml.FullLoader`` itself, for every user of that class)."""


ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        """^(?:
     [-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*
    |[-+]?\\.(?:inf|Inf|INF)
    |\\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_config_files(file_list, loader=ConfigYamlLoader):
    """RecBole's ``Config._load_config_files``: the files' keys merged in order, each file a yaml mapping.

    Raises:
        FileNotFoundError: naming the missing file.
        ValueError: naming the file, and the line of a yaml syntax error, or saying that it is not a mapping.
    """
    merged = {}
    for file in file_list or []:
        if not os.path.isfile(file):
            raise FileNotFoundError(f"config file {file}: no such file")
        with open(file, "r", encoding="utf-8") as f:
            text = f.read()
        try:
            values = yaml.load(text, Loader=loader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"config file {file}: not valid YAML{where}: {problem}") from None
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"config file {file}: must be a yaml mapping of config keys (key: value lines), "
                             f"got a {type(values).__name__}")
        merged.update(values)
    return merged


# Shim 15 ------------------------------------------------------------------------------------------
def _load_feat_checked(original_load_feat):
    @functools.wraps(original_load_feat)
    def _load_feat(self, filepath, source):
        from recbole_sprint.data.checks import check_header, explain_load_error

        check_header(self, filepath)
        try:
            return original_load_feat(self, filepath, source)
        except ValueError as error:
            raise explain_load_error(self, filepath, error) from error

    _load_feat.recbole_sprint_shim = True
    return _load_feat


def _data_processing_checked(original_data_processing):
    @functools.wraps(original_data_processing)
    def _data_processing(self):
        from recbole_sprint.data.checks import check_interactions

        check_interactions(self)  # before RecBole drops NaN ids, removes duplicates or fills NaN times
        return original_data_processing(self)

    _data_processing.recbole_sprint_shim = True
    return _data_processing


def check_atomic_files():
    """Check RecBole's atomic files as it loads them (:mod:`recbole_sprint.data.checks`)."""
    from recbole.data.dataset.dataset import Dataset

    if not getattr(Dataset._load_feat, "recbole_sprint_shim", False):
        Dataset._load_feat = _load_feat_checked(Dataset._load_feat)
    if not getattr(Dataset._data_processing, "recbole_sprint_shim", False):
        Dataset._data_processing = _data_processing_checked(Dataset._data_processing)


# Shim 16 ------------------------------------------------------------------------------------------
def no_negatives_for_ce(config):
    """Before RecBole's ``Config._set_default_parameters``: a sequential model trained with ``loss_type: CE``
    (SASRec's, BERT4Rec's, GRU4Rec's default, ...) gets ``train_neg_sample_args: None`` unless the user set it.

    RecBole's overall.yaml samples one uniform negative for every model, and its own check then rejects the
    combination (configurator.py:342), so ``run_recbole --model=SASRec`` stops unless the user knows to add
    ``train_neg_sample_args: ~``. Here the default follows the loss; an explicit ``train_neg_sample_args``
    (file, dict or command line) is kept, and RecBole's check still rejects it with CE.
    """
    from recbole.utils import ModelType

    final = config.final_config_dict
    if (
        final.get("MODEL_TYPE") == ModelType.SEQUENTIAL
        and not hasattr(config.model_class, "input_type")  # RecBole reads loss_type only for these
        and final.get("loss_type") == "CE"
        and "train_neg_sample_args" not in config.external_config_dict
    ):
        final["train_neg_sample_args"] = None


# Shim 17 ------------------------------------------------------------------------------------------
def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def plain_console_handlers(logger=None):
    """Console handlers (``StreamHandler`` s that are not file handlers) of ``logger`` (default: the root logger)
    with a colouring formatter whose stream is not a terminal: plain format, colour codes removed."""
    import logging

    import colorlog
    from recbole.utils.logger import RemoveColorFilter

    for handler in (logger or logging.getLogger()).handlers:
        if (type(handler) is logging.StreamHandler and isinstance(handler.formatter, colorlog.ColoredFormatter)
                and not _is_terminal(handler.stream)):
            handler.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%d %b %H:%M"))
            if not any(isinstance(f, RemoveColorFilter) for f in handler.filters):
                handler.addFilter(RemoveColorFilter())


def _init_logger_plain_off_a_terminal(init_logger):
    @functools.wraps(init_logger)
    def init(config):
        init_logger(config)
        plain_console_handlers()

    init.recbole_sprint_shim = True
    return init


def plain_console_off_a_terminal():
    """Wrap RecBole's ``init_logger`` (where ``recbole.utils`` and RecBole's quick start look it up)."""
    import recbole.utils
    import recbole.utils.logger

    for module in (recbole.utils.logger, recbole.utils):
        if not getattr(module.init_logger, "recbole_sprint_shim", False):
            module.init_logger = _init_logger_plain_off_a_terminal(module.init_logger)


# Shim 18 ------------------------------------------------------------------------------------------
def _agg_len_per_row(original_agg):
    @functools.wraps(original_agg)
    def agg(self, func=None, *args, **kwargs):
        if func is len:  # pandas < 3: per row
            return self.map(len)
        return original_agg(self, func, *args, **kwargs)

    return agg


def _with_len_per_row(method):
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        import pandas as pd

        original = pd.Series.agg
        pd.Series.agg = _agg_len_per_row(original)
        try:
            return method(self, *args, **kwargs)
        finally:
            pd.Series.agg = original

    wrapped.recbole_sprint_shim = True
    return wrapped


def series_len_per_row():
    """Give RecBole's sequence-field code pandas < 3's ``Series.agg(len)`` (one length per row).

    RecBole computes the split points of its token and float sequence columns with
    ``np.cumsum(feat[field].agg(len))``; pandas 3 applies ``agg``'s function to the whole Series, so the
    split points vanish. Within the methods that do this (and only while they run), ``agg(len)`` is
    ``map(len)``; ``agg(np.concatenate)``, which they also call, means the same in both pandas versions.
    """
    from recbole.data.dataset.dataset import Dataset
    from recbole.data.dataset.kg_dataset import KnowledgeBasedDataset
    from recbole.data.dataset.sequential_dataset import SequentialDataset

    for cls, names in ((Dataset, ("_remap", "_normalize", "_discretization")),
                       (SequentialDataset, ("_benchmark_presets",)),
                       (KnowledgeBasedDataset, ("_reset_ent_remapID",))):
        for name in names:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "recbole_sprint_shim", False):
                setattr(cls, name, _with_len_per_row(method))


# Shim 19 ------------------------------------------------------------------------------------------
def _reconstruct_test_data(self, item_seq, item_seq_len):
    """RecBole's ``BERT4Rec.reconstruct_test_data`` without its per-row loop: ``[MASK]`` after each row's items.

    ``item_seq`` ``[B, n]`` (items left-aligned, 0-padded), ``item_seq_len`` ``[B]`` (1..n). RecBole appends a
    padding column, writes ``[MASK]`` at each row's position ``len`` and drops the first column, so a full row
    loses its oldest item; the same here, by one ``scatter_``.
    """
    padding = item_seq.new_zeros(item_seq.size(0), 1)
    item_seq = torch.cat((item_seq, padding), dim=-1)  # [B, n + 1]
    item_seq.scatter_(1, item_seq_len.view(-1, 1).to(torch.long), self.mask_token)
    return item_seq[:, 1:]  # [B, n]


def vectorised_bert4rec_mask():
    """Make RecBole's ``BERT4Rec.reconstruct_test_data`` one ``scatter_`` (the same tensor, no per-user sync)."""
    from recbole.model.sequential_recommender.bert4rec import BERT4Rec

    BERT4Rec.reconstruct_test_data = _reconstruct_test_data


_APPLIED = False


def apply():
    """Install the process-wide shims (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    install_warning_filters()
    numpy_aliases()
    disable_anomaly_detection()
    _patch_dataset_download()
    fused_gelu()
    ddp_on_cpu()
    race_free_ensure_dir()
    fill_nan_by_assignment()
    dok_update()
    check_atomic_files()
    plain_console_off_a_terminal()
    series_len_per_row()
    vectorised_bert4rec_mask()
    _APPLIED = True
