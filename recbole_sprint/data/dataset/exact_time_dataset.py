r"""recbole_sprint.data.dataset.exact_time_dataset
#############################################

Timestamps in float64, for models that read them (HSTU's time buckets).

RecBole converts every float field to float32 (``Dataset._dataframe_to_interaction``), whose spacing at Unix
times of about 1e9 s is 64 s; its ``SequentialDataset`` then copies the rounded values into the float64
``timestamp_list``. HSTU buckets time gaps by ``floor(ln(dt) / 0.301)``, so gaps under a minute or two lose
their bucket: on ``ml-1m-3k``, 37% of the gaps between consecutive interactions of a user (58% at lag 5) fall
into another bucket with float32 times than with the file's integer seconds. :class:`ExactTimeMixin` keeps
``TIME_FIELD`` in float64 (integers up to 2^53 s exactly); every other field is converted as RecBole does.

The order of interactions stays RecBole's: sorting uses the float32 values RecBole would sort by (its sorts are
stable, so interactions whose times round to the same float32 keep their file order). Every model therefore
sees the same sequences and the same validation and test items, whether its dataset has exact times or not;
only the time values differ, and then within one user's sequence two neighbours' exact times may be out of
order by less than the float32 spacing (HSTU's buckets use ``|dt|``).
"""

import torch
from recbole.data.dataset import SequentialDataset
from recbole.utils import FeatureType

_EXACT_TIME = "__recbole_sprint_exact_time"  # temporary column while sorting


class ExactTimeMixin:
    """Mix into a RecBole dataset: ``TIME_FIELD`` (a float field) becomes a float64 tensor, not float32."""

    def _dataframe_to_interaction(self, data):
        interaction = super()._dataframe_to_interaction(data)
        time_field = self.time_field
        if time_field in data and self.field2type[time_field] == FeatureType.FLOAT:
            interaction[time_field] = torch.from_numpy(data[time_field].to_numpy(dtype="float64", copy=True))
        return interaction

    def sort(self, by, ascending=True):
        """RecBole's ``Dataset.sort``, keyed by the float32-rounded times (RecBole's order), exact values kept."""
        keys = [by] if isinstance(by, str) else list(by)
        times = self.inter_feat[self.time_field] if self.time_field in keys else None
        if times is None or times.dtype != torch.float64:
            return super().sort(by=by, ascending=ascending)
        self.inter_feat[_EXACT_TIME] = times  # reordered with every other field by the sort
        self.inter_feat[self.time_field] = times.float().double()  # the keys RecBole would sort by
        super().sort(by=by, ascending=ascending)
        self.inter_feat[self.time_field] = self.inter_feat.interaction.pop(_EXACT_TIME)


class ExactTimeSequentialDataset(ExactTimeMixin, SequentialDataset):
    """RecBole's :class:`SequentialDataset` (prefix samples) with float64 timestamps."""
