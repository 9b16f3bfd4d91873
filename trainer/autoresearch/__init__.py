"""Autoresearch, the miner's edge: a budgeted hyperparameter search, then the final artifact.

`autoresearch(job, reporter, history) -> TrainResult` is the one entry point; see search.py for the
phases, trace.py for the saved search trace, history.py for the warm-start store.
"""

from trainer.autoresearch.history import HistoryStore, JsonHistoryStore, NullHistory, TrialRecord, size_bucket
from trainer.autoresearch.search import SearchSettings, autoresearch
from trainer.autoresearch.trace import SearchTrace, format_trace, load_trace, trace_path

__all__ = [
    "HistoryStore",
    "JsonHistoryStore",
    "NullHistory",
    "SearchSettings",
    "SearchTrace",
    "TrialRecord",
    "autoresearch",
    "format_trace",
    "load_trace",
    "size_bucket",
    "trace_path",
]
