from recbole_sprint.data.dataset.full_sequence_dataset import (
    TRAIN_MODES,
    FullSequenceDataset,
    check_train_mode,
    target_list_field,
)

__all__ = ["TRAIN_MODES", "FullSequenceDataset", "check_train_mode", "target_list_field"]
