"""Results store: one JSON object per finished run, appended to a JSONL file.

Each line is written with a single ``write`` followed by ``flush`` and ``fsync``, so that a crash loses at
most the run that was being written. On reading, a last line without its newline (a write cut short) is
ignored, and the run it described is simply run again; any other line that is not a stored run is an error
(:class:`StoreError`) naming the line and how to recover. Appends take an exclusive ``flock`` on the store
file itself (never replaced, only appended to), so several benchmark processes (``--shard``) can share one store
and no lock file is left beside it.
"""

import fcntl
import json
import os


class StoreError(ValueError):
    """A line of the results store that is not a stored run (edited by hand, or written by something else)."""


class ResultStore:
    """Append-only JSONL store of finished runs, keyed by ``run_id``."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def load(self):
        """All complete records, in the order they were written (a later record with the same id wins)."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            data = f.read()
        records = {}
        for number, line in enumerate(data.split(b"\n")[:-1], start=1):  # after the last newline: incomplete
            if line.strip():
                record = self._parse(line, number)
                records[record["run_id"]] = record
        return list(records.values())

    def _parse(self, line, number):
        """One stored run; :class:`StoreError` naming the line and how to recover when it is not one."""
        try:
            record = json.loads(line)
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            problem = f"is not valid JSON ({error})"
        else:
            if isinstance(record, dict) and isinstance(record.get("run_id"), str):
                return record
            problem = "is not a stored run (a JSON object with a 'run_id')"
        raise StoreError(
            f"results store {self.path}: line {number} {problem}. Each line is one finished run; delete that line "
            f"(e.g. sed -i '{number}d' {self.path}, after a backup) and the run it held is trained again on the "
            "next call"
        )

    def finished_ids(self, finished_since=None):
        """Run ids of the stored runs; with ``finished_since`` (a ``finished_at`` string), only those of the runs
        that finished at or after it."""
        records = self.load()
        if finished_since is not None:
            records = [r for r in records if r.get("finished_at", "") >= finished_since]
        return {record["run_id"] for record in records}

    def append(self, record):
        """Append one record durably."""
        line = json.dumps(record, sort_keys=True, default=_to_json) + "\n"
        with open(self.path, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
            self._drop_partial_tail()
            f.write(line.encode("utf-8"))  # append mode: at the end, after the cut
            f.flush()
            os.fsync(f.fileno())

    def _drop_partial_tail(self):
        """Cut off a last line that a crash left without its newline, so the next record starts cleanly."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)


def _to_json(value):
    """numpy scalars (RecBole metric values are np.float64) -> Python numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in the results store")
