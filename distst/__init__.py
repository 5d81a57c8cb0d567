"""distst: distributed large-graph training for spatio-temporal forecasting."""

__version__ = "0.1.0"
