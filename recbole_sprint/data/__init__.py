from recbole_sprint.data.utils import DatasetUnavailableError, create_dataset, data_preparation

__all__ = ["DatasetUnavailableError", "create_dataset", "data_preparation"]
