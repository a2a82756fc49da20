"""The fit file: the contract between fitting and everything after it.

A fit is an :class:`xarray.DataTree` written to netCDF-4 (HDF5, through the netCDF4 library) with the groups

``posterior``
    parameter draws (chain, draw, ...), names as in ``docs/architecture.md``;
``sample_stats``
    sampler statistics (``diverging`` at least);
``log_likelihood``
    ``y`` (chain, draw, period): log p(y_t | y_1..t−1, θ), the one-step-ahead predictive density of each
    period under each draw, states marginalised;
``log_prior``
    log prior density terms per draw (for prior-sensitivity work);
``panel``
    the panel the model was fitted to (:func:`forecast.panel.build_panel`);
``filtered_state`` (optional: files written before it existed lack it)
    each draw's filtered distribution of the last fitted period, ``log_filtered`` (chain, draw, scenario: the
    evidence alone, what is reported) and ``log_filtered_conditioned`` (the same under everything the fit
    conditioned on: the evidence and, when the fit used them, the analyst labels), with the scalar coordinate
    ``period`` (the last fitted period). An online update (:mod:`forecast.update`) continues the filter from
    these states instead of filtering the whole history again.

and root attributes (JSON text where structured): ``forecast_fit_format``, ``forecast_version``,
``library_versions``, ``created``, ``data_sha256``, ``seed``, ``sampler``, ``prior_set``, ``model_options``,
``catalog``, ``diagnostics``, ``converged`` and ``content_sha256`` (a SHA-256 over every array, checked on
load so that a damaged file is refused rather than used). Loading never unpickles anything.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from forecast.atomic import atomic_path
from forecast.errors import FitFileError
from forecast.inputs import ModelOptions

logger = logging.getLogger(__name__)

#: Version of the fit-file layout; bumped on incompatible changes.
FIT_FORMAT = 1
#: xarray engine for every netCDF file the package writes and reads (fit and update files). The netCDF4
#: library opens a fit file's ~90 variables about five times faster than h5netcdf (0.05 s against 0.25 s on
#: the bundled fit), which is most of the cost of reading a fit; files written by either are read by both.
NETCDF_ENGINE = "netcdf4"
#: Groups every fit file has.
REQUIRED_GROUPS = ("posterior", "sample_stats", "log_likelihood", "log_prior", "panel")
#: Groups a fit file may have (checked and hashed when present).
OPTIONAL_GROUPS = ("filtered_state",)
#: Variables of the ``filtered_state`` group, each (chain, draw, scenario).
FILTERED_STATE_VARIABLES = ("log_filtered", "log_filtered_conditioned")
#: Root attributes every fit file has.
REQUIRED_ATTRS = (
    "forecast_fit_format", "forecast_version", "library_versions", "created", "data_sha256", "seed",
    "sampler", "prior_set", "model_options", "catalog", "diagnostics", "converged", "content_sha256",
)
_JSON_ATTRS = ("library_versions", "sampler", "prior_set", "model_options", "diagnostics")
_LIBRARIES = (
    "pymc", "pytensor", "pymc-extras", "arviz", "numpyro", "jax", "nutpie", "numpy", "scipy", "pandas", "xarray",
    "netCDF4",
)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a fit depends on (``"absent"`` for those not installed).

    Returns
    -------
    dict of str to str
        Distribution name to version.
    """
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@dataclass(frozen=True)
class Fit:
    """A fitted model: posterior draws, the panel they were fitted to, and how they were made.

    Build one with :meth:`from_parts` (fitting does) or :func:`load_fit`; write it with :func:`save_fit`.

    Parameters
    ----------
    tree : xarray.DataTree
        The groups and attributes described in the module docstring.
    """

    tree: xr.DataTree

    @classmethod
    def from_parts(
        cls,
        *,
        posterior: xr.Dataset,
        sample_stats: xr.Dataset,
        log_likelihood: xr.Dataset,
        log_prior: xr.Dataset,
        panel: xr.Dataset,
        data_sha256: str,
        seed: int,
        sampler: dict[str, Any],
        prior_set: dict[str, Any],
        model_options: ModelOptions,
        catalog: str,
        diagnostics: dict[str, Any],
        converged: bool,
        filtered_state: xr.Dataset | None = None,
    ) -> Fit:
        """Assemble a fit from its parts and stamp it with versions, time and a content hash.

        Parameters
        ----------
        posterior, sample_stats, log_likelihood, log_prior : xarray.Dataset
            The inference groups (``chain`` and ``draw`` dimensions first).
        panel : xarray.Dataset
            The fitted panel.
        data_sha256 : str
            SHA-256 of the input data files.
        seed : int
            The seed that makes the fit reproducible.
        sampler : dict
            Sampler settings (backend, chains, draws, tune, target_accept, ...).
        prior_set : dict
            The serialised prior set (:meth:`forecast.priors.PriorSet.to_dict`).
        model_options : ModelOptions
            Structural options and standardisation constants.
        catalog : str
            The catalog TOML text the panel was built with.
        diagnostics : dict
            The convergence gate's findings (:func:`forecast.fitting.check_convergence`).
        converged : bool
            Whether the gate passed; a fit that did not pass is never used silently.
        filtered_state : xarray.Dataset, optional
            Each draw's filtered state of the last fitted period (:func:`filtered_state_group`). Without it an
            online update filters the whole history again.

        Returns
        -------
        Fit
            The assembled fit.
        """
        from forecast import __version__

        attrs: dict[str, Any] = {
            "forecast_fit_format": FIT_FORMAT,
            "forecast_version": __version__,
            "library_versions": library_versions(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "data_sha256": data_sha256,
            "seed": int(seed),
            "sampler": sampler,
            "prior_set": prior_set,
            "model_options": model_options.to_dict(),
            "catalog": catalog,
            "diagnostics": diagnostics,
            "converged": int(bool(converged)),
        }
        groups = {
            "posterior": posterior,
            "sample_stats": sample_stats,
            "log_likelihood": log_likelihood,
            "log_prior": log_prior,
            "panel": _panel_for_netcdf(panel),
        }
        if filtered_state is not None:
            groups["filtered_state"] = filtered_state
        tree = xr.DataTree.from_dict({"/": xr.Dataset(attrs=_encode_attrs(attrs)), **groups})
        tree.attrs["content_sha256"] = content_sha256(tree)
        return cls(tree=tree)

    # -- accessors -------------------------------------------------------------------------------------------
    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws, dims (chain, draw, ...)."""
        return self.tree["posterior"].to_dataset()

    @property
    def sample_stats(self) -> xr.Dataset:
        """Sampler statistics."""
        return self.tree["sample_stats"].to_dataset()

    @property
    def log_likelihood(self) -> xr.Dataset:
        """Per-period one-step-ahead log predictive densities ``y`` (chain, draw, period)."""
        return self.tree["log_likelihood"].to_dataset()

    @property
    def log_prior(self) -> xr.Dataset:
        """Log prior density terms per draw."""
        return self.tree["log_prior"].to_dataset()

    @property
    def panel(self) -> xr.Dataset:
        """The fitted panel."""
        return _panel_from_netcdf(self.tree["panel"].to_dataset())

    @property
    def filtered_state(self) -> xr.Dataset | None:
        """Each draw's filtered state of the last fitted period (see the module docstring), or None if absent."""
        if "filtered_state" not in self.tree.children:
            return None
        return self.tree["filtered_state"].to_dataset()

    @property
    def options(self) -> ModelOptions:
        """Model options and standardisation constants."""
        return ModelOptions.from_dict(self.attr("model_options"))

    @property
    def converged(self) -> bool:
        """Whether the fit passed its convergence gate."""
        return bool(self.attr("converged"))

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The convergence gate's findings."""
        return self.attr("diagnostics")

    @property
    def n_draws(self) -> int:
        """Total number of posterior draws (chains × draws)."""
        return int(self.posterior.sizes["chain"] * self.posterior.sizes["draw"])

    def attr(self, name: str) -> Any:
        """Return a root attribute, decoding JSON-valued ones.

        Parameters
        ----------
        name : str
            Attribute name (see the module docstring).

        Returns
        -------
        Any
            The decoded value.
        """
        value = self.tree.attrs[name]
        if name in _JSON_ATTRS:
            return json.loads(value)
        if isinstance(value, np.generic):
            return value.item()
        return value

    def provenance(self) -> dict[str, Any]:
        """What a reader needs to reproduce or trust this fit.

        Returns
        -------
        dict
            Data hash, versions, seed, sampler settings, prior set, creation time.
        """
        return {
            "data_sha256": self.attr("data_sha256"),
            "forecast_version": self.attr("forecast_version"),
            "library_versions": self.attr("library_versions"),
            "seed": self.attr("seed"),
            "sampler": self.attr("sampler"),
            "prior_set": self.attr("prior_set"),
            "created": self.attr("created"),
            "fit_format": self.attr("forecast_fit_format"),
        }


def content_sha256(tree: xr.DataTree) -> str:
    """SHA-256 over every variable and coordinate of every group, in a canonical order.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit tree.

    Returns
    -------
    str
        Hex digest. Root attributes other than ``content_sha256`` are included as text.
    """
    digest = hashlib.sha256()
    for key in sorted(k for k in tree.attrs if k != "content_sha256"):
        digest.update(f"{key}={tree.attrs[key]}".encode())
    for group in REQUIRED_GROUPS + OPTIONAL_GROUPS:
        if group not in tree.children:
            continue
        ds = tree[group].to_dataset()
        for name in sorted(map(str, ds.variables)):
            values = np.asarray(ds[name].values)
            # netCDF may hand strings back as object arrays and booleans as integers: hash values, not types
            if values.dtype.kind in "OUS":
                digest.update(f"{group}/{name}:text:{values.shape}".encode())
                digest.update("\x1f".join(map(str, values.ravel().tolist())).encode())
            else:
                if values.dtype.kind == "b":
                    values = values.astype(np.int8)
                elif values.dtype.kind == "M":
                    values = values.astype("datetime64[ns]").view(np.int64)
                digest.update(f"{group}/{name}:{values.dtype.kind}:{values.shape}".encode())
                digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def save_fit(fit: Fit, path: str | Path) -> Path:
    """Write ``fit`` to ``path`` atomically (a crash leaves any previous file intact).

    Parameters
    ----------
    fit : Fit
        The fit to write.
    path : str or pathlib.Path
        Target, conventionally ``*.nc``.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    with atomic_path(path, suffix=".nc") as tmp:
        fit.tree.to_netcdf(tmp, engine=NETCDF_ENGINE)
    logger.info("wrote fit file %s", path)
    return path


def load_fit(path: str | Path) -> Fit:
    """Read and check a fit file.

    Parameters
    ----------
    path : str or pathlib.Path
        A file written by :func:`save_fit`.

    Returns
    -------
    Fit
        The fit, fully loaded into memory.

    Raises
    ------
    FitFileError
        If the file is missing, unreadable, damaged (content hash mismatch), of another format version, or lacks
        a group or attribute.
    """
    path = Path(path)
    tree = read_netcdf(path, "fit file", "a netCDF fit file",
                       missing_fix="run 'forecast fit' (or 'forecast report') to create one",
                       damaged_fix="the file is damaged or not a fit file; refit with 'forecast fit'", tree=True)
    missing_attrs = [a for a in REQUIRED_ATTRS if a not in tree.attrs]
    missing_groups = [g for g in REQUIRED_GROUPS if g not in tree.children]
    if missing_attrs or missing_groups:
        raise FitFileError(
            path,
            "not a forecast fit file (missing " + ", ".join(missing_groups + missing_attrs) + ")",
            "pass a file written by 'forecast fit'",
        )
    version = int(np.asarray(tree.attrs["forecast_fit_format"]).item())
    if version != FIT_FORMAT:
        raise FitFileError(
            path, f"fit file format {version}, this version of forecast reads format {FIT_FORMAT}",
            "refit with this version ('forecast fit') or use the forecast version that wrote it",
        )
    expected = str(tree.attrs["content_sha256"])
    actual = content_sha256(tree)
    if actual != expected:
        raise FitFileError(
            path, "content does not match its checksum: the file is damaged or was edited",
            "refit with 'forecast fit'; do not edit fit files by hand",
        )
    if "filtered_state" in tree.children:
        problem = _filtered_state_problem(tree)
        if problem:
            raise FitFileError(path, f"its filtered_state group is malformed ({problem})",
                               "refit with 'forecast fit'; do not edit fit files by hand")
    return Fit(tree=tree)


def filtered_state_group(
    log_filtered: Any, log_filtered_conditioned: Any, *, chains: int, draws: int, period: Any,
    scenarios: Any = None,
) -> xr.Dataset:
    """The ``filtered_state`` group of a fit file from per-draw filtered states of the last fitted period.

    Parameters
    ----------
    log_filtered : array_like
        (chains × draws, 4) log filtered probabilities of the last fitted period given the evidence alone,
        draws flattened chain-major (as :func:`forecast.emissions.params_from_posterior`).
    log_filtered_conditioned : array_like
        (chains × draws, 4) the same given everything the fit conditioned on (evidence and, when the fit used
        them, analyst labels); pass ``log_filtered`` again when the fit did not use labels.
    chains, draws : int
        Posterior shape.
    period : datetime-like
        Start of the last fitted period.
    scenarios : sequence of str, optional
        Scenario ids (default :data:`forecast.scenarios.SCENARIOS`).

    Returns
    -------
    xarray.Dataset
        Variables ``log_filtered`` and ``log_filtered_conditioned`` (chain, draw, scenario) and the scalar
        coordinate ``period``.
    """
    from forecast.scenarios import SCENARIOS

    scenarios = list(SCENARIOS if scenarios is None else scenarios)
    shape = (chains, draws, len(scenarios))
    data = {}
    for name, values in zip(FILTERED_STATE_VARIABLES, (log_filtered, log_filtered_conditioned), strict=True):
        values = np.asarray(values, dtype=float)
        if values.size != int(np.prod(shape)):
            raise ValueError(f"{name} has shape {values.shape}, expected {chains * draws} draws × {len(scenarios)}")
        data[name] = (("chain", "draw", "scenario"), values.reshape(shape))
    return xr.Dataset(data, coords={"chain": np.arange(chains), "draw": np.arange(draws), "scenario": scenarios,
                                    "period": np.datetime64(np.asarray(period, dtype="datetime64[ns]").item(), "ns")})


def _filtered_state_problem(tree: xr.DataTree) -> str:
    """What is wrong with a fit tree's ``filtered_state`` group ("" when nothing)."""
    ds = tree["filtered_state"].to_dataset()
    post = tree["posterior"].to_dataset()
    expected = (post.sizes.get("chain"), post.sizes.get("draw"), post.sizes.get("scenario", 4))
    for name in FILTERED_STATE_VARIABLES:
        if name not in ds:
            return f"no variable {name}"
        if ds[name].dims != ("chain", "draw", "scenario") or ds[name].shape != expected:
            return (f"{name} has dims {ds[name].dims} and shape {ds[name].shape}, expected (chain, draw, scenario) "
                    f"{expected}")
    if "period" not in ds.coords or ds["period"].ndim != 0:
        return "no scalar period coordinate"
    return ""


def read_netcdf(path: Path, noun: str, read_as: str, *, missing_fix: str, damaged_fix: str,
                tree: bool = False) -> Any:
    """Open a netCDF file written by this package and load it into memory, or raise a :class:`FitFileError`.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    noun : str
        What the file is, for the message when it is missing (``"no such fit file"``).
    read_as : str
        What it was read as, for the message when it cannot be read (``"cannot be read as a netCDF fit file"``).
    missing_fix, damaged_fix : str
        What the user should do when the file is missing, or unreadable.
    tree : bool, optional
        Open it as an :class:`xarray.DataTree` (groups) instead of an :class:`xarray.Dataset`.

    Returns
    -------
    xarray.DataTree or xarray.Dataset
        The loaded content, the file closed.
    """
    if not path.exists():
        raise FitFileError(path, f"no such {noun}", missing_fix)
    try:
        if tree:
            content = xr.open_datatree(path, engine=NETCDF_ENGINE)
            content = content.load()
            content.close()
            return content
        with xr.open_dataset(path, engine=NETCDF_ENGINE) as handle:
            return handle.load()
    except Exception as exc:  # the netCDF and HDF5 libraries raise many types for truncated or foreign files
        raise FitFileError(path, f"cannot be read as {read_as} ({type(exc).__name__}: {exc})", damaged_fix) from None


def _encode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v, sort_keys=True) if k in _JSON_ATTRS else v) for k, v in attrs.items()}


def _panel_for_netcdf(panel: xr.Dataset) -> xr.Dataset:
    """NetCDF has no bool: store bool variables as int8 and remember which they were."""
    out = panel.copy()
    bools = [str(n) for n in out.variables if out[n].dtype == bool]
    for name in bools:
        out[name] = out[name].astype("int8")
    out.attrs = {**panel.attrs, "bool_variables": json.dumps(bools)}
    return out


def _panel_from_netcdf(panel: xr.Dataset) -> xr.Dataset:
    out = panel.copy()
    bools = json.loads(out.attrs.pop("bool_variables", "[]"))
    for name in bools:
        out[name] = out[name].astype(bool)
    for name in out.coords:
        if out[name].dtype.kind == "O":
            out = out.assign_coords({name: out[name].astype(str)})
    return out
