"""forecast: Bayesian scenario probabilities for South Korea–Japan security cooperation."""

from forecast.scenarios import SCENARIOS

__version__ = "0.1.0"

__all__ = ["SCENARIOS", "__version__"]
