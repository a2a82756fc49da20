"""Packaged prior sets of the scenario model (TOML files; see :mod:`forecast.priors`)."""
