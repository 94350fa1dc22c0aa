"""Recording unit activations over a corpus into an exemplar store."""

from .config import RecordConfig
from .recorder import Recorder, record

__all__ = ["RecordConfig", "Recorder", "record"]
