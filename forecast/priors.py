"""Named, serialisable prior sets of the scenario model.

A :class:`PriorSet` holds one :class:`pymc_extras.prior.Prior` per parameter family of the model (see
``docs/model.md`` for the equations and the reason for every default). Prior sets travel as TOML files —
packaged ones live in ``forecast/priorsets/`` and are loaded by name — and as plain dicts stored in the fit
file, so that a fit says exactly which priors produced it. Nothing is ever evaluated: TOML is parsed with
:mod:`tomllib` and every entry is checked against the family's allowed distributions.

A TOML file names the set and overrides any subset of the families; families it leaves out keep the
``default`` set's prior::

    name = "my_set"
    description = "Longer expected scenario durations."

    [priors.stickiness]
    dist = "Normal"
    kwargs = { mu = 5.5, sigma = 0.75 }
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pymc_extras.prior import Prior

from forecast.errors import ConfigError
from forecast.scenarios import N_SCENARIOS

logger = logging.getLogger(__name__)

__all__ = [
    "FAMILIES",
    "PriorSet",
    "default_prior_set",
    "implied_duration",
    "load_prior_set",
    "packaged_prior_sets",
]

_POSITIVE = ("HalfNormal", "Gamma", "LogNormal", "Exponential", "HalfStudentT", "HalfCauchy", "InverseGamma",
             "Weibull")
_REAL = ("Normal", "StudentT", "Cauchy", "Laplace", "Logistic", "SkewNormal", "Gumbel")


@dataclass(frozen=True)
class Family:
    """One parameter family: what it governs and which distributions may describe it."""

    description: str
    allowed: tuple[str, ...]


#: Parameter families of the model, in the order of ``docs/model.md``.
FAMILIES: dict[str, Family] = {
    "intercept_location": Family("mean of the count signals' intercepts (log events per full period)", _REAL),
    "intercept_scale": Family("spread of the count signals' intercepts around their mean", _POSITIVE),
    "level_intercept": Family("intercept of each level signal (standardised scale)", _REAL),
    "loading_group_scale": Family("τ_group: scale of the factor loadings within an indicator group", _POSITIVE),
    "interaction_loading": Family("u·r interaction loading of a non-marker signal (shrunk towards 0)", _REAL),
    "marker_ratio": Family("Beta ratio of a marker's cross-loading to its loading on its own factor", ("Beta",)),
    "nb_alpha": Family("negative-binomial dispersion φ of each count signal", _POSITIVE),
    "level_sigma": Family("Normal scale of each level signal (standardised scale)", _POSITIVE),
    "stickiness": Family("ρ_i, log-odds weight of staying in scenario i (expected duration)", _REAL),
    "driver_effect": Family("γ: shift of transition log-odds per standard deviation of a driver", _REAL),
    "init_prob": Family("Dirichlet initial scenario distribution", ("Dirichlet",)),
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "intercept_location": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 2.0}},
    "intercept_scale": {"dist": "Gamma", "kwargs": {"alpha": 4.0, "beta": 4.0}},
    "level_intercept": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 1.0}},
    "loading_group_scale": {"dist": "Gamma", "kwargs": {"alpha": 4.0, "beta": 4.0}},
    "interaction_loading": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 0.3}},
    "marker_ratio": {"dist": "Beta", "kwargs": {"alpha": 2.0, "beta": 2.0}},
    "nb_alpha": {"dist": "Gamma", "kwargs": {"alpha": 2.0, "beta": 0.2}},
    "level_sigma": {"dist": "HalfNormal", "kwargs": {"sigma": 1.0}},
    "stickiness": {"dist": "Normal", "kwargs": {"mu": 4.5, "sigma": 1.0}},
    "driver_effect": {"dist": "Normal", "kwargs": {"mu": 0.0, "sigma": 0.5}},
    "init_prob": {"dist": "Dirichlet", "kwargs": {"a": [2.0, 2.0, 2.0, 2.0]}},
}

_PACKAGE = "forecast.priorsets"


def implied_duration(stickiness: float | np.ndarray) -> float | np.ndarray:
    """Expected scenario duration (periods) implied by a stickiness ρ with drivers at their mean.

    With all driver terms 0, ``P(stay) = e^ρ / (e^ρ + 3)``, so the sojourn is geometric with mean
    ``1 / (1 − P(stay)) = 1 + e^ρ / 3``.

    Parameters
    ----------
    stickiness : float or numpy.ndarray
        ρ.

    Returns
    -------
    float or numpy.ndarray
        Expected duration in periods.
    """
    return 1.0 + np.exp(stickiness) / (N_SCENARIOS - 1)


@dataclass(frozen=True)
class PriorSet:
    """A named prior set: one :class:`~pymc_extras.prior.Prior` per family of :data:`FAMILIES`.

    Parameters
    ----------
    name : str
        Name recorded in the fit file.
    priors : dict of str to Prior
        Every family of :data:`FAMILIES`.
    description : str
        What the set expresses.
    """

    name: str
    priors: dict[str, Prior]
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = self.source or f"prior set {self.name!r}"
        missing = [k for k in FAMILIES if k not in self.priors]
        if missing:
            raise ConfigError(f"{where}: missing prior(s) {', '.join(missing)}; give every family of "
                              "forecast.priors.FAMILIES (files may leave families out to keep the default)")
        for key, prior in self.priors.items():
            _check_prior(key, prior, where)

    def __getitem__(self, key: str) -> Prior:
        return self.priors[key]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON- and TOML-serialisable dict (the form stored in the fit file)."""
        return {
            "name": self.name,
            "description": self.description,
            "priors": {key: _plain(self.priors[key].to_dict()) for key in FAMILIES},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "") -> PriorSet:
        """Rebuild a prior set from :meth:`to_dict` output (or a parsed TOML file).

        Families absent from ``data["priors"]`` take the ``default`` set's prior.

        Parameters
        ----------
        data : dict
            ``name``, optional ``description`` and ``priors`` (family → ``{"dist": ..., "kwargs": {...}}``).
        source : str
            Where the data came from, for error messages.

        Returns
        -------
        PriorSet
            The prior set.

        Raises
        ------
        ConfigError
            Naming the source, the key and the fix for any unknown key or bad prior.
        """
        where = source or "prior set"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table with name and [priors.*] entries")
        unknown_top = set(data) - {"name", "description", "priors"}
        if unknown_top:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown_top))}; allowed: name, "
                              "description, priors")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: key 'name' must be a non-empty string, e.g. name = \"my_priors\"")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{where}: key 'description' must be a string")
        entries = data.get("priors", {})
        if not isinstance(entries, dict):
            raise ConfigError(f"{where}: 'priors' must be a table of [priors.<family>] entries")
        unknown = [k for k in entries if k not in FAMILIES]
        if unknown:
            raise ConfigError(f"{where}: unknown prior family {', '.join(repr(k) for k in unknown)}; "
                              f"use one of {', '.join(FAMILIES)}")
        priors: dict[str, Prior] = {}
        for key in FAMILIES:
            entry = entries.get(key, _DEFAULTS[key])
            priors[key] = _prior_from_entry(entry, key, where)
        return cls(name=name, priors=priors, description=description, source=source)

    def to_toml(self) -> str:
        """Return the prior set as TOML text that :meth:`from_toml` reads back."""
        lines = [f"name = {_toml_value(self.name)}", f"description = {_toml_value(self.description)}", ""]
        for key, entry in self.to_dict()["priors"].items():
            lines.append(f"# {FAMILIES[key].description}")
            lines.append(f"[priors.{key}]")
            lines.append(f"dist = {_toml_value(entry['dist'])}")
            kwargs = ", ".join(f"{k} = {_toml_value(v)}" for k, v in entry.get("kwargs", {}).items())
            lines.append(f"kwargs = {{ {kwargs} }}")
            lines.append("")
        return "\n".join(lines)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "") -> PriorSet:
        """Parse TOML text (see the module docstring for the layout).

        Parameters
        ----------
        text : str
            TOML text.
        source : str
            File name for error messages.

        Returns
        -------
        PriorSet
            The prior set.

        Raises
        ------
        ConfigError
            If the text is not valid TOML or describes a bad prior set.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source or 'prior set'}: not valid TOML ({exc}); fix the syntax at that "
                              "line") from None
        return cls.from_dict(data, source=source)

    def summary(self) -> list[str]:
        """One human-readable line per family."""
        return [f"{key}: {self.priors[key]}" for key in FAMILIES]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")


def _prior_from_entry(entry: Any, key: str, where: str) -> Prior:
    if not isinstance(entry, dict) or "dist" not in entry:
        raise ConfigError(f"{where}: [priors.{key}] needs dist = \"<distribution>\" and kwargs = {{ ... }}, "
                          f"e.g. dist = \"{_DEFAULTS[key]['dist']}\"")
    extra = set(entry) - {"dist", "kwargs"}
    if extra:
        raise ConfigError(f"{where}: [priors.{key}] has unknown key(s) {', '.join(sorted(extra))}; only dist "
                          "and kwargs are allowed (dims, transforms and nesting are fixed by the model)")
    kwargs = entry.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where}: [priors.{key}] kwargs must be an inline table, e.g. kwargs = {{ sigma = 1.0 }}")
    for name, value in kwargs.items():
        if isinstance(value, dict):
            raise ConfigError(f"{where}: [priors.{key}] kwargs.{name} is a nested prior; give a number")
    try:
        prior = Prior.from_dict({"dist": entry["dist"], "kwargs": dict(kwargs)})
    except Exception as exc:  # pymc_extras raises several types for a bad name or parameter
        raise ConfigError(f"{where}: [priors.{key}] is not a valid prior ({exc}); allowed distributions: "
                          f"{', '.join(FAMILIES[key].allowed)}") from None
    _check_prior(key, prior, where)
    return prior


def _check_prior(key: str, prior: Prior, where: str) -> None:
    family = FAMILIES.get(key)
    if family is None:
        raise ConfigError(f"{where}: unknown prior family {key!r}; use one of {', '.join(FAMILIES)}")
    if prior.distribution not in family.allowed:
        raise ConfigError(f"{where}: [priors.{key}] dist = {prior.distribution!r} is not allowed for "
                          f"{family.description}; use one of {', '.join(family.allowed)}")
    if prior.dims:
        raise ConfigError(f"{where}: [priors.{key}] must not set dims; the model sets them")
    for name, value in prior.parameters.items():
        if isinstance(value, Prior):
            raise ConfigError(f"{where}: [priors.{key}] kwargs.{name} is a nested prior; give a number")
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{where}: [priors.{key}] kwargs.{name} = {value!r} must be finite")
    if key == "init_prob":
        a = np.asarray(prior.parameters.get("a", []), dtype=float)
        if a.shape != (N_SCENARIOS,) or np.any(a <= 0):
            raise ConfigError(f"{where}: [priors.init_prob] kwargs.a must be {N_SCENARIOS} positive numbers in "
                              "scenario order (trilateral, bilateral_alliances, direct_bilateral, multilateral)")


def default_prior_set() -> PriorSet:
    """The ``default`` prior set (documented with reasons in ``docs/model.md``)."""
    return load_prior_set("default")


def packaged_prior_sets() -> list[str]:
    """Names of the prior sets shipped with the package."""
    files = resources.files(_PACKAGE)
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_prior_set(name_or_path: str | Path) -> PriorSet:
    """Load a packaged prior set by name, or a prior-set TOML file by path.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        ``default``, ``flat``, ``paper``, ``sceptical``, ``wide_loadings``, ``tight_loadings``, or a path to
        a ``.toml`` file.

    Returns
    -------
    PriorSet
        The prior set.

    Raises
    ------
    ConfigError
        If the name is unknown or the file is missing or bad (the message names file, key and fix).
    """
    text_name = str(name_or_path)
    if isinstance(name_or_path, str) and not text_name.endswith(".toml") and "/" not in text_name:
        names = packaged_prior_sets()
        if text_name not in names:
            raise ConfigError(f"unknown prior set {text_name!r}; use one of {', '.join(names)} or a path to a "
                              ".toml file")
        resource = resources.files(_PACKAGE) / f"{text_name}.toml"
        return PriorSet.from_toml(resource.read_text(encoding="utf-8"), source=f"forecast/priorsets/{text_name}.toml")
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"prior set file {path} does not exist; give a packaged name "
                          f"({', '.join(packaged_prior_sets())}) or an existing .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read prior set ({exc}); save it as UTF-8 text") from None
    return PriorSet.from_toml(text, source=str(path))

