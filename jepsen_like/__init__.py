"""Histories and checkers for Jepsen-style testing; pure functions over recorded histories.

The same code checks histories from the deterministic simulator and from real processes.
"""

from jepsen_like.history import Event as Event
from jepsen_like.history import HistoryError as HistoryError
from jepsen_like.history import HistoryRecorder as HistoryRecorder
from jepsen_like.history import Operation as Operation
from jepsen_like.history import dump_history as dump_history
from jepsen_like.history import load_history as load_history
from jepsen_like.history import pair_operations as pair_operations
from jepsen_like.history import parse_history as parse_history
from jepsen_like.linearizability import CheckResult as CheckResult
from jepsen_like.linearizability import Failure as Failure
from jepsen_like.linearizability import UNKNOWN as UNKNOWN
from jepsen_like.linearizability import PartitionResult as PartitionResult
from jepsen_like.linearizability import check as check
from jepsen_like.models import MODELS as MODELS
from jepsen_like.models import NO_VALUE as NO_VALUE
from jepsen_like.models import KVModel as KVModel
from jepsen_like.models import Model as Model
from jepsen_like.models import ModelError as ModelError
from jepsen_like.models import RegisterModel as RegisterModel
from jepsen_like.models import ValueFlowModel as ValueFlowModel

__all__ = [
    "CheckResult",
    "Event",
    "Failure",
    "HistoryError",
    "HistoryRecorder",
    "KVModel",
    "MODELS",
    "Model",
    "ModelError",
    "NO_VALUE",
    "Operation",
    "PartitionResult",
    "RegisterModel",
    "UNKNOWN",
    "ValueFlowModel",
    "check",
    "dump_history",
    "load_history",
    "pair_operations",
    "parse_history",
]
