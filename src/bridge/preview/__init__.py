"""PreviewEngine: strategy instances traded virtually, side by side, no broker call."""

from bridge.preview.engine import InstanceSpec, PreviewResult, run_preview
from bridge.preview.signal_grid import signal_grid

__all__ = ["InstanceSpec", "PreviewResult", "run_preview", "signal_grid"]
