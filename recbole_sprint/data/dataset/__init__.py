from recbole_sprint.data.dataset.exact_time_dataset import ExactTimeMixin, ExactTimeSequentialDataset
from recbole_sprint.data.dataset.full_sequence_dataset import (
    TRAIN_MODES,
    FullSequenceDataset,
    check_train_mode,
    target_list_field,
)

__all__ = [
    "TRAIN_MODES",
    "ExactTimeMixin",
    "ExactTimeSequentialDataset",
    "FullSequenceDataset",
    "check_train_mode",
    "target_list_field",
]
