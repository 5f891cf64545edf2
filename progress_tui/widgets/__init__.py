"""The widgets of progress-tui, one module each."""

from .calculation_view import CalculationView
from .connection_bar import ConnectionStatusBar
from .event_log import EventLog
from .history_table import HistoryTable
from .key_bar import KeyBar
from .spinner import Spinner
from .state_banner import StateBanner
from .step_list import StepList

__all__ = [
    "CalculationView",
    "ConnectionStatusBar",
    "EventLog",
    "HistoryTable",
    "KeyBar",
    "Spinner",
    "StateBanner",
    "StepList",
]
