"""Dataset creation: RecBole's, plus a clear error when a dataset is neither on disk nor downloadable, and the
``train_mode: full_sequence`` dataset (:class:`~recbole_sprint.data.dataset.FullSequenceDataset`)."""

import os
import urllib.error

import recbole.data
from recbole.utils import ModelType

from recbole_sprint.compat import unsharded_eval_loader
from recbole_sprint.data.dataset import ExactTimeSequentialDataset, FullSequenceDataset, check_train_mode


class DatasetUnavailableError(RuntimeError):
    """The dataset's atomic files are not on disk and RecBole could not download them."""


def _unavailable_message(config, cause):
    name = config["dataset"]
    folder = config["data_path"]
    return (
        f"dataset [{name}] is not on disk and could not be downloaded ({cause}).\n"
        f"RecBole looked for its atomic files in {folder}/ (i.e. {folder}/{name}.inter).\n"
        f"Put them there, or point RecBole at the folder that contains a '{name}/' directory:\n"
        f"    --data_path=/path/to/datasets   (or data_path: in a --config_files yaml)\n"
        "RecBole's processed atomic files: https://recbole.io/dataset_list.html "
        "(this machine's copies, if any: ../shared/datasets, e.g. --dataset=ml-1m-3k --data_path=../shared/datasets)"
    )


def downloadable_datasets():
    """Names of the datasets RecBole can download (``recbole/properties/dataset/{url,kg_url}.yaml``)."""
    import yaml

    folder = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset")
    names = set()
    for file in ("url.yaml", "kg_url.yaml"):
        path = os.path.join(folder, file)
        if os.path.isfile(path):
            with open(path) as f:
                names |= set(yaml.safe_load(f) or {})
    return names


def datasets_under(data_path):
    """Names ``n`` of the folders ``<data_path>/n/`` that hold ``n.inter``, sorted."""
    if not os.path.isdir(data_path):
        return []
    return sorted(n for n in os.listdir(data_path) if os.path.isfile(os.path.join(data_path, n, f"{n}.inter")))


def check_dataset_files(config):
    """``DatasetUnavailableError`` (one line) when the dataset cannot be there: its folder is missing and RecBole
    cannot download a dataset of that name ("no such dataset"), or its folder has no ``.inter`` file. Run by the
    plugin's Config, before any check of the dataset's columns.

    A downloadable name whose folder is missing passes (RecBole downloads it in ``create_dataset``), as does a
    config that reads a saved dataset (``dataset_save_path``)."""
    import difflib

    name, folder = config["dataset"], config["data_path"]
    if config["dataset_save_path"] or not isinstance(name, str) or not isinstance(folder, str):
        return
    parts = config["benchmark_filename"]
    files = [f"{name}.inter"] if parts is None else [f"{name}.{part}.inter" for part in parts]
    missing = [file for file in files if not os.path.isfile(os.path.join(folder, file))]
    if not missing:
        return
    if os.path.isdir(folder):
        present = sorted(f for f in os.listdir(folder) if not f.startswith("."))[:10]
        raise DatasetUnavailableError(
            f"no .inter file for dataset [{name}]: {folder}/ has no {missing[0]} (RecBole's interactions file; "
            f"the folder holds {present or 'nothing'})"
        )
    if name in downloadable_datasets():
        return
    parent = os.path.dirname(os.path.abspath(folder))
    on_disk = datasets_under(parent)
    close = difflib.get_close_matches(name, on_disk + sorted(downloadable_datasets()), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    listed = ", ".join(on_disk[:10]) + (f", ... ({len(on_disk)} in all)" if len(on_disk) > 10 else "")
    where = f"datasets there: {listed}" if on_disk else "no datasets there"
    raise DatasetUnavailableError(
        f"no such dataset [{name}]: no {name}/{name}.inter under data_path {parent} ({where}), and RecBole cannot "
        f"download a dataset of that name{hint} (set --data_path to the folder holding {name}/)"
    )


def check_full_sequence_config(config):
    """Raise ``ValueError`` if ``train_mode: full_sequence`` cannot work with this config's model or sampling."""
    from recbole_sprint.model.full_sequence import ClozeFullSequence, FullSequence  # the model side
    from recbole_sprint.utils import get_model

    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        raise ValueError(f"train_mode 'full_sequence' needs a sequential model, got {config['model']}")
    model_class = get_model(config["model"])
    if not issubclass(model_class, (FullSequence, ClozeFullSequence)):
        raise ValueError(
            f"train_mode 'full_sequence' is not supported by {config['model']} (allowed values for it: ['prefix']); "
            "models that implement recbole_sprint.model.full_sequence.FullSequence support it (SASRecSPRINT, HSTU, "
            "HSTUSPRINT), and BERT4RecSPRINT with its cloze loss; for a baseline use the SPRINT model with "
            "sprint_*_weight: 0, which trains exactly like its backbone"
        )
    neg_args = config["train_neg_sample_args"]
    if neg_args is not None and neg_args.get("distribution", "none") != "none":
        raise ValueError(
            "train_neg_sample_args must be None (~) with train_mode 'full_sequence': the BCE and "
            f"sampled_softmax losses draw their own negatives (num_negatives); got {neg_args}"
        )


def needs_exact_timestamps(config):
    """Whether ``config["model"]`` reads timestamps and so needs them in float64 (``exact_timestamps``)."""
    from recbole_sprint.utils import get_model

    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return False
    return getattr(get_model(config["model"]), "exact_timestamps", False)


def create_dataset(config):
    """``recbole.data.create_dataset``; a failed download of a missing dataset raises
    :class:`DatasetUnavailableError` with instructions instead of a urllib traceback.

    With ``train_mode: full_sequence`` the dataset is a :class:`FullSequenceDataset` (RecBole's
    ``SequentialDataset``, one training row per user; valid/test unchanged). A model whose class sets
    ``exact_timestamps = True`` (HSTU) gets, in prefix mode, RecBole's ``SequentialDataset`` with float64
    timestamps (:class:`ExactTimeSequentialDataset`; the full-sequence dataset has them too). These are built
    directly, so RecBole's ``dataset_save_path`` reuse of a pickled dataset does not apply to them."""
    on_disk = os.path.isdir(config["data_path"])
    full_sequence = check_train_mode(config) == "full_sequence"
    if full_sequence:
        check_full_sequence_config(config)
    try:
        if full_sequence:
            return FullSequenceDataset(config)
        if needs_exact_timestamps(config):
            return ExactTimeSequentialDataset(config)
        return recbole.data.create_dataset(config)
    except (urllib.error.URLError, OSError) as error:
        if on_disk:
            raise
        raise DatasetUnavailableError(_unavailable_message(config, error)) from error


def data_preparation(config, dataset):
    """RecBole's ``data_preparation`` (the train/valid/test dataloaders).

    The training dataset also carries the per-item counts of every interaction, for the evaluator's
    ``popularity_source: all``. RecBole's ``TrainDataLoader`` serves the full-sequence rows of a
    :class:`FullSequenceDataset` unchanged (``train_batch_size`` then counts users).

    In a multi-process (DDP) run the training rows are split between the processes, as in RecBole, but the
    validation and test loaders are not (:func:`recbole_sprint.compat.unsharded_eval_loader`).

    For sequential models in full-ranking mode the validation and test loaders carry each user's history
    (:func:`attach_user_histories`)."""
    from recbole_sprint.evaluator.popularity import attach_full_popularity

    if check_train_mode(config) == "full_sequence" and not isinstance(dataset, FullSequenceDataset):
        raise ValueError(
            "train_mode 'full_sequence' needs the dataset from recbole_sprint.data.create_dataset "
            f"(a FullSequenceDataset), got {type(dataset).__name__}"
        )
    train_data, valid_data, test_data = recbole.data.data_preparation(config, dataset)
    attach_full_popularity(train_data._dataset, dataset)
    if not config["single_spec"]:
        valid_data, test_data = unsharded_eval_loader(config, valid_data), unsharded_eval_loader(config, test_data)
    attach_user_histories(config, dataset, valid_data, test_data)
    return train_data, valid_data, test_data


def attach_user_histories(config, dataset, valid_data, test_data):
    """Give the full-ranking loaders of a sequential model the users' histories before each split
    (``loader.user_history``, a :class:`~recbole_sprint.evaluator.history.UserHistory`), which the plugin's
    trainers mask (``eval_exclude_history``) and count (``HistoryShare``)."""
    from recbole_sprint.evaluator.history import split_histories

    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return
    loaders = (valid_data, test_data)
    histories = split_histories(dataset, [loader._dataset if loader else None for loader in loaders])
    for loader, history in zip(loaders, histories):
        if loader is not None:
            loader.user_history = history
