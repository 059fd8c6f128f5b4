"""Seeing why recurrent nets forget, and which cells don't: gradient flow through time, gradient
health during training, gate saturation, activation pages for character LMs, the long-range
benchmarks (adding problem, copy memory), and plots.

- ``gradient_flow(layer, x, loss_fn)`` — exact ‖∂L/∂h_t‖, ‖∂L/∂C_t‖, ‖∂L/∂x_t‖ per step and layer
  (``gradients.py``), plotted by ``plot_gradient_flow``;
- ``GradientMonitor`` — global norm, clip rate, exploding/vanishing warnings for a trainer (``monitor.py``);
- ``gate_saturation(layer, x)`` — per-gate saturation (``saturation.py``);
- ``write_activation_page(model, text, stoi, itos, path)`` — the HTML page (``activations.py``);
- ``run_adding``, ``run_copy``, ``sweep`` — the benchmarks (``experiments.py``);
- ``attention_heatmap``, ``plot_confusion_matrix`` — PNGs for Seq2Seq and classifiers (``plots.py``).
"""
from .activations import CharTrace, activation_page, char_lm_trace, most_variable_units, write_activation_page
from .experiments import RunResult, TrainConfig, run_adding, run_copy, sweep
from .gradients import GradientFlow, gradient_flow
from .monitor import GradientEvent, GradientMonitor, GradientWarning, MonitorConfig, NonFiniteLossError
from .plots import attention_heatmap, confusion_matrix, plot_confusion_matrix, plot_gradient_flow, plot_sweep
from .saturation import GateStats, SaturationReport, gate_saturation
from .stepping import SteppedRun, step_layer
from .tasks import CELLS, AddingModel, CopyModel, adding_batch, copy_batch, make_layer

__all__ = [
    "CELLS", "AddingModel", "CharTrace", "CopyModel", "GateStats", "GradientEvent", "GradientFlow",
    "GradientMonitor", "GradientWarning", "MonitorConfig", "NonFiniteLossError", "RunResult", "SaturationReport",
    "SteppedRun", "TrainConfig", "activation_page", "adding_batch", "attention_heatmap", "char_lm_trace",
    "confusion_matrix", "copy_batch", "gate_saturation", "gradient_flow", "make_layer", "most_variable_units",
    "plot_confusion_matrix", "plot_gradient_flow", "plot_sweep", "run_adding", "run_copy", "step_layer", "sweep",
    "write_activation_page",
]
