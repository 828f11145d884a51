"""Dataset creation: RecBole's, plus a clear error when a dataset is neither on disk nor downloadable."""

import os
import urllib.error

import recbole.data


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


def create_dataset(config):
    """``recbole.data.create_dataset``; a failed download of a missing dataset raises
    :class:`DatasetUnavailableError` with instructions instead of a urllib traceback."""
    on_disk = os.path.isdir(config["data_path"])
    try:
        return recbole.data.create_dataset(config)
    except (urllib.error.URLError, OSError) as error:
        if on_disk:
            raise
        raise DatasetUnavailableError(_unavailable_message(config, error)) from error


def data_preparation(config, dataset):
    """RecBole's ``data_preparation`` (the train/valid/test dataloaders); the training dataset also carries
    the per-item counts of every interaction, for the evaluator's ``popularity_source: all``."""
    from recbole_sprint.evaluator.popularity import attach_full_popularity

    train_data, valid_data, test_data = recbole.data.data_preparation(config, dataset)
    attach_full_popularity(train_data._dataset, dataset)
    return train_data, valid_data, test_data
