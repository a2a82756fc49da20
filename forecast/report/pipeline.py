"""The scheduled report: data → panel → fit (reused, updated or refitted) → content → render → publish.

:func:`run_report` is what ``forecast report`` runs. It holds the output directory's lock for the whole run,
reuses the fit of the latest published report when the data only grew (an online update by importance
reweighting, :mod:`forecast.update`), refits when the data were revised, the reweighting cannot be trusted, the
settings changed or no fit exists, and publishes ``<out>/<as-of>/`` by rename so that a failed or killed run
never damages the last good report. Running again on the same data with the same settings changes nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forecast.report.publish import PublishedReport
from forecast.sampler_defaults import (
    DEFAULT_CHAINS,
    DEFAULT_DRAWS,
    DEFAULT_STARTS,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
)

if TYPE_CHECKING:
    import xarray as xr

    from forecast.fitfile import Fit

logger = logging.getLogger(__name__)

#: ``report.json`` layout version.
SCHEMA_VERSION = 1
#: Exit codes of ``forecast report`` (documented in docs/report.md).
EXIT_PUBLISHED = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_DIAGNOSTICS_FAILED = 3
EXIT_LOCK_TIMEOUT = 4
EXIT_REFIT_REQUIRED = 5
#: Forecast horizon whose change is attributed to observations.
ATTRIBUTION_HORIZON = 3
#: More changed observation rows than this are not attributed one by one (too slow, and not informative).
MAX_ATTRIBUTED_ROWS = 200

Fitter = Callable[..., "Fit"]


@dataclass(frozen=True)
class FitSettings:
    """Sampler settings and prior set of a refit (part of the report's settings for idempotency).

    Parameters
    ----------
    seed, draws, tune, chains : int
        Sampler settings (defaults: :mod:`forecast.sampler_defaults`, as ``forecast fit``).
    target_accept : float
        NUTS target acceptance rate.
    backend : str
        NUTS backend (``numpyro``, ``nutpie``, ``pymc``).
    priors : str
        Prior set name or path (``"default"`` for the default set).
    starts : int
        Posterior-mode searches before sampling (:func:`forecast.start.find_mode`).
    """

    seed: int = 20261125
    draws: int = DEFAULT_DRAWS
    tune: int = DEFAULT_TUNE
    chains: int = DEFAULT_CHAINS
    target_accept: float = DEFAULT_TARGET_ACCEPT
    backend: str = "numpyro"
    priors: str = "default"
    starts: int = DEFAULT_STARTS

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"seed": self.seed, "draws": self.draws, "tune": self.tune, "chains": self.chains,
                "target_accept": self.target_accept, "backend": self.backend, "priors": self.priors,
                "starts": self.starts}


def default_fitter(panel: xr.Dataset, *, settings: FitSettings, catalog_text: str, data_sha256: str,
                   progress: bool = True) -> Fit:
    """Fit the model with :func:`forecast.fitting.fit` (the fitter :func:`run_report` uses by default).

    Parameters
    ----------
    panel : xarray.Dataset
        The panel.
    settings : FitSettings
        Sampler settings and prior set.
    catalog_text : str
        Catalog TOML recorded in the fit.
    data_sha256 : str
        Data hash recorded in the fit.
    progress : bool, optional
        Show sampler progress.

    Returns
    -------
    forecast.fitfile.Fit
        The fit (possibly not converged: its diagnostics say so).
    """
    from forecast import fitting
    from forecast.priors import default_prior_set, load_prior_set

    priors = default_prior_set() if settings.priors == "default" else load_prior_set(settings.priors)
    return fitting.fit(panel, priors=priors, seed=settings.seed, draws=settings.draws, tune=settings.tune,
                       chains=settings.chains, target_accept=settings.target_accept, backend=settings.backend,
                       starts=settings.starts,
                       catalog_text=catalog_text,
                       data_sha256=data_sha256, progress=progress)


@dataclass
class ReportOutcome:
    """What a report run did.

    Attributes
    ----------
    status : str
        ``"published"``, ``"up_to_date"`` (same data and settings as the latest report: nothing written) or
        ``"refit_required"`` (``on_refit="tell"`` and the fit could not be reused: nothing written).
    exit_code : int
        The command's exit code (see :data:`EXIT_PUBLISHED` and the others).
    as_of : str
        The data's as-of date.
    directory : pathlib.Path or None
        The report directory (the existing one when up to date).
    report : dict or None
        The ``report.json`` content.
    message : str
        One line for the terminal.
    """

    status: str
    exit_code: int
    as_of: str
    directory: Path | None
    report: dict[str, Any] | None
    message: str
    removed_leftovers: list[Path] = field(default_factory=list)


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite floats to None, paths to text."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _write(path: Path, text: str) -> None:
    """Write one file of a report being assembled (in the temporary directory)."""
    path.write_text(text, encoding="utf-8")


def _settings_of(fit_settings: FitSettings, horizon: int, config_sha256: str) -> dict[str, Any]:
    return {"fit": fit_settings.to_dict(), "horizon": horizon, "report_toml_sha256": config_sha256}


def run_report(
    data_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    fitter: Fitter = default_fitter,
    fit_settings: FitSettings | None = None,
    now: _dt.datetime | None = None,
    on_refit: str = "auto",
    force_refit: bool = False,
    lock_timeout: float = 600.0,
    horizon: int = 12,
    progress: bool = True,
) -> ReportOutcome:
    """Produce and publish the report of the data in ``data_dir``.

    Parameters
    ----------
    data_dir : str or pathlib.Path
        The data directory (``catalog.toml``, ``observations/``, ``labels.csv``, optional ``report.toml``).
    out_dir : str or pathlib.Path, optional
        Output directory; default ``out_dir`` of ``report.toml``, else ``reports`` in the current directory.
    fitter : callable, optional
        ``fitter(panel, *, settings, catalog_text, data_sha256, progress) -> Fit``; :func:`default_fitter`
        runs MCMC.
    fit_settings : FitSettings, optional
        Sampler settings and prior set for a refit.
    now : datetime.datetime, optional
        The generation time written into the report (default: the current UTC time).
    on_refit : {"auto", "tell"}, optional
        When the previous fit cannot be reused: refit (``"auto"``) or publish nothing and say so (``"tell"``).
    force_refit : bool, optional
        Refit even when the previous fit could be reused, and publish even when up to date.
    lock_timeout : float, optional
        Seconds to wait for another run holding the output directory's lock.
    horizon : int, optional
        Forecast horizon in periods (at least 3).
    progress : bool, optional
        Show sampler progress when refitting.

    Returns
    -------
    ReportOutcome
        Status, exit code, directory and the report's content.

    Raises
    ------
    forecast.errors.UserInputError
        Bad data or settings (exit code 2).
    forecast.report.publish.LockTimeout
        The lock was not acquired in time (exit code 4).
    """
    from forecast.dataset import load_dataset
    from forecast.panel import build_panel
    from forecast.report.config import load_report_config
    from forecast.report.publish import published_reports, remove_leftovers, report_lock, write_index

    if on_refit not in ("auto", "tell"):
        raise ValueError(f"on_refit must be 'auto' or 'tell', got {on_refit!r}")
    if horizon < ATTRIBUTION_HORIZON:
        raise ValueError(f"horizon must be at least {ATTRIBUTION_HORIZON}")
    data_dir = Path(data_dir)
    fit_settings = fit_settings or FitSettings()
    logger.info("loading data from %s", data_dir)
    dataset = load_dataset(data_dir)
    panel = build_panel(dataset, "M")
    drivers = [str(d) for d in panel["driver"].values.tolist()]
    config = load_report_config(data_dir, drivers=drivers, horizon=horizon)
    out = Path(out_dir) if out_dir is not None else (config.out_dir or Path("reports"))
    as_of = str(panel.attrs["observed_through"])[:10]
    settings = _settings_of(fit_settings, horizon, config.sha256)

    with report_lock(out, lock_timeout):
        leftovers = remove_leftovers(out)
        reports = published_reports(out)
        previous = reports[-1] if reports else None
        same = next((p for p in reports if p.as_of == as_of), None)
        if (same is not None and not force_refit and same.report["provenance"]["data_sha256"] == dataset.sha256
                and same.report.get("settings") == settings):
            write_index(out)
            return ReportOutcome("up_to_date", _exit_code(same.report), as_of, same.path, same.report,
                                 f"up to date: {same.path} already reports these data with these settings",
                                 leftovers)
        fit, path, reason, update_result, source_fit = _choose_fit(
            previous, panel, dataset, fit_settings, fitter, on_refit, force_refit, progress)
        if fit is None:
            return ReportOutcome("refit_required", EXIT_REFIT_REQUIRED, as_of, None, None,
                                 f"refit required and --refit tell: {reason}; nothing published", leftovers)
        report, images, extras = _assemble(fit, panel, dataset, config, previous, path, reason, update_result,
                                           settings, horizon, now)
        target = out / as_of
        _publish(target, report, images, extras, fit, source_fit, update_result, data_dir)
        write_index(out)
    code = _exit_code(report)
    message = f"published {target}" + ("" if code == EXIT_PUBLISHED else " WITH FAILED DIAGNOSTICS")
    logger.info(message)
    return ReportOutcome("published", code, as_of, target, report, message, leftovers)


def _exit_code(report: dict[str, Any]) -> int:
    return EXIT_PUBLISHED if report["diagnostics"]["passed"] else EXIT_DIAGNOSTICS_FAILED


def _choose_fit(previous: PublishedReport | None, panel: xr.Dataset, dataset: Any, fit_settings: FitSettings,
                fitter: Fitter, on_refit: str, force_refit: bool, progress: bool):
    """Return (fit, path, reason, update_result, source_fit_path) — fit None when a refit is due but not allowed."""
    from forecast.errors import FitFileError
    from forecast.fitfile import load_fit
    from forecast.update import update

    reason = None
    if force_refit:
        reason = "a refit was forced (--force-refit)"
    elif previous is None:
        reason = "no previous report with a fit"
    elif previous.report.get("settings", {}).get("fit") != fit_settings.to_dict():
        reason = "the sampler settings or prior set differ from the previous report's"
    if reason is None:
        fit_path = previous.path / "fit.nc"
        try:
            fit = load_fit(fit_path)
        except FitFileError as exc:
            logger.warning("cannot reuse the previous fit: %s", exc)
            reason = f"the previous fit could not be read ({exc.reason})"
        else:
            if not fit.converged:
                reason = "the previous fit did not pass its convergence gate"
        if reason is None:
            logger.info("trying an update of %s", fit_path)
            result = update(fit, panel)
            if result.path == "update":
                return fit, "update", result.reason, result, fit_path
            reason = result.reason
    if on_refit == "tell":
        return None, "refit", reason, None, None
    logger.info("refitting: %s", reason)
    fit = fitter(panel, settings=fit_settings, catalog_text=dataset.catalog.text, data_sha256=dataset.sha256,
                 progress=progress)
    return fit, "refit", reason, None, None


def _scenario_summary(mean: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict[str, dict[str, float]]:
    from forecast.scenarios import SCENARIOS

    return {s: {"mean": float(mean[i]), "lower": float(lower[i]), "upper": float(upper[i])}
            for i, s in enumerate(SCENARIOS)}


def _assemble(fit: Fit, panel: xr.Dataset, dataset: Any, config: Any, previous: PublishedReport | None,
              path: str, reason: str, update_result: Any, settings: dict[str, Any], horizon: int,
              now: _dt.datetime | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Compute the content, the report dict (report.json), the images and the extras for the templates."""
    from forecast import __version__
    from forecast.report import content as C
    from forecast.report import plots
    from forecast.scenarios import SCENARIOS

    log_w = update_result.log_weights if update_result is not None else None
    content = C.compute_content(fit, panel, log_weights=log_w, horizon=horizon, what_if=config.what_if)
    names = {ind.id: ind.name for ind in dataset.catalog}
    f = content.filtered
    fac = content.factors_now
    generated = (now or _dt.datetime.now(_dt.UTC)).isoformat(timespec="seconds")
    forecast = []
    for h, period in enumerate(content.forecast_periods):
        ff = content.forecast_factors
        forecast.append({
            "horizon": h + 1, "period": period.strftime("%Y-%m-%d"),
            "scenarios": _scenario_summary(content.forecast.mean[h], content.forecast.lower[h],
                                           content.forecast.upper[h]),
            "factors": {name: {"mean": float(ff.mean[h, k]), "lower": float(ff.lower[h, k]),
                               "upper": float(ff.upper[h, k])} for k, name in enumerate(C.FACTOR_NAMES)},
        })
    what_if = []
    for item in content.what_if:
        alt, diff = item["what_if"], item["difference"]
        horizons = []
        for h in range(horizon):
            horizons.append({"horizon": h + 1, "scenarios": {s: {
                "baseline": float(item["baseline"][h, i]), "what_if": float(alt.mean[h, i]),
                "lower": float(alt.lower[h, i]), "upper": float(alt.upper[h, i]),
                "difference": float(diff.mean[h, i]), "difference_lower": float(diff.lower[h, i]),
                "difference_upper": float(diff.upper[h, i]),
                "difference_median": float(item["difference_median"][h, i]),
                "p_increase": float(item["p_increase"][h, i]), "p_decrease": float(item["p_decrease"][h, i]),
            } for i, s in enumerate(SCENARIOS)}})
        what_if.append({"name": item["name"], "description": item["description"], "drivers": item["drivers"],
                        "horizons": horizons})

    diag = dict(fit.diagnostics or {})
    failures = [str(x) for x in diag.get("failures", [])]
    if not fit.converged and not failures:
        failures.append("the fit did not pass its convergence gate")
    passed = bool(fit.converged) and not failures
    advice: list[str] = []
    if not fit.converged:  # what to try; imported only then (the report path does not need the fitting code)
        from forecast.fitting import gate_advice

        advice = gate_advice(diag, fit.attr("sampler") or {})
    diagnostics = {
        "passed": passed, "failures": failures, "advice": advice,
        "max_rhat": diag.get("max_rhat"), "min_ess_bulk": diag.get("min_ess_bulk"),
        "min_ess_tail": diag.get("min_ess_tail"), "divergences": diag.get("divergences"),
        "label_switching": diag.get("label_switching"),
        "pareto_k": update_result.pareto_k if update_result is not None else None,
        "weights_ess": content.ess, "n_draws": content.n_draws,
    }
    prior_set = fit.attr("prior_set")
    provenance = {
        "path": path, "path_reason": reason,
        "data_sha256": dataset.sha256,
        "forecast_version": __version__,
        "library_versions": fit.attr("library_versions"),
        "fit_forecast_version": fit.attr("forecast_version"),
        "prior_set": prior_set.get("name", "unnamed") if isinstance(prior_set, dict) else str(prior_set),
        "prior_set_definition": prior_set,
        "seed": fit.attr("seed"),
        "sampler": fit.attr("sampler"),
        "model_options": fit.attr("model_options"),
        "fit": {"file": "fit.nc", "content_sha256": str(fit.tree.attrs["content_sha256"]),
                "created": fit.attr("created"), "data_sha256": fit.attr("data_sha256")},
        "update_file": "update.nc" if update_result is not None else None,
    }
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "as_of": str(panel.attrs["observed_through"])[:10],
        "period": content.periods[-1].strftime("%Y-%m-%d"),
        "generated": generated,
        "freq": str(panel.attrs.get("freq", "M")),
        "interval": C.INTERVAL,
        "scenarios": _scenario_summary(f.mean[-1], f.lower[-1], f.upper[-1]),
        "factors": {name: {"mean": float(fac.mean[k]), "lower": float(fac.lower[k]), "upper": float(fac.upper[k])}
                    for k, name in enumerate(C.FACTOR_NAMES)},
        "forecast": forecast,
        "what_if": what_if,
        "history": C.history_summary(content, panel),
        "what_changed": _what_changed(previous, fit, panel, dataset, content, names,
                                      previous_fit=fit if path == "update" else None),
        "diagnostics": diagnostics,
        "provenance": provenance,
        "settings": settings,
        "indicator_periods": C.INDICATOR_PERIODS,
        "indicators": [{"id": ind.id, "name": ind.name, "role": ind.role, "kind": ind.kind,
                        "unit": getattr(ind, "unit", ""), "source": getattr(ind, "source", "")}
                       for ind in dataset.catalog],
    }
    report = _clean(report)
    labels = dataset.labels
    images = {
        "history": plots.history_plot(content, labels),
        "forecast": plots.forecast_plot(content),
        "indicators": plots.indicator_plot(C.indicator_table(panel, names)),
        "what_if": [plots.what_if_plot(item, content.forecast_periods) for item in content.what_if],
    }
    extras = {"labels": [
        {"start": str(row.start)[:10], "end": str(row.end)[:10], "scenario": row.scenario,
         "confidence": float(row.confidence), "rationale": str(row.rationale), "source": str(row.source)}
        for row in labels.itertuples()
    ]}
    return report, images, extras


def _what_changed(previous: PublishedReport | None, fit: Fit, panel: xr.Dataset, dataset: Any, content: Any,
                  names: dict[str, str], previous_fit: Fit | None = None) -> dict[str, Any]:
    """Change per scenario since the previous report, the changed rows, and their attribution.

    ``previous_fit`` is the previous report's fit when already loaded (on the update path it is the fit being
    reweighted), so that it is not read again.
    """
    from forecast.scenarios import SCENARIOS

    empty = {"previous_as_of": None, "previous_generated": None, "changes": {}, "rows": [], "attribution": None,
             "attribution_error": None, "summary": "This is the first report."}
    if previous is None:
        return empty
    prev = previous.report
    now = content.filtered.mean[-1]
    changes = {s: {"previous": prev["scenarios"][s]["mean"], "new": float(now[i]),
                   "change": 100 * (float(now[i]) - prev["scenarios"][s]["mean"])}
               for i, s in enumerate(SCENARIOS)}
    out = {**empty, "previous_as_of": prev["as_of"], "previous_generated": prev["generated"], "changes": changes}
    try:
        from forecast.attribution import diff_rows, rows_from_frame
        from forecast.dataset import load_dataset

        prev_dataset = load_dataset(previous.path / "data")
        rows = diff_rows(rows_from_frame(prev_dataset.observations), rows_from_frame(dataset.observations))
    except Exception as exc:  # an old snapshot that no longer validates must not stop the report
        logger.warning("cannot compare with the previous report's data: %s", exc)
        out["attribution_error"] = f"the previous report's data could not be read ({exc})"
        out["summary"] = _plain_summary(changes)
        return out
    out["rows"] = [{"change": r.change, "date": r.date, "indicator": r.indicator,
                    "name": names.get(r.indicator, r.indicator), "value": r.value, "source": r.source,
                    "note": r.note, "file": Path(r.file).name, "line": r.line} for r in rows]
    if len(rows) > MAX_ATTRIBUTED_ROWS:
        out["attribution_error"] = (f"{len(rows)} observation rows changed (more than {MAX_ATTRIBUTED_ROWS}); "
                                    "not attributed one by one")
        out["summary"] = _plain_summary(changes)
        return out
    try:
        attribution = _attribute(previous, prev_dataset, panel, dataset, content, names, previous_fit)
    except Exception as exc:  # attribution is explanatory; the probabilities stand without it
        logger.warning("attribution failed: %s", exc, exc_info=True)
        out["attribution_error"] = str(exc)
        out["summary"] = _plain_summary(changes)
        return out
    table = attribution.table
    by_row = []
    for (row, file, line), sub in table.groupby(["row", "file", "line"], sort=False):
        by_row.append({"row": row, "file": Path(str(file)).name if file else "", "line": int(line),
                       "current": dict(zip(sub["scenario"], sub["current"], strict=True)),
                       "forecast": dict(zip(sub["scenario"], sub["forecast"], strict=True))})
    out["attribution"] = {"horizon": ATTRIBUTION_HORIZON, "rows": by_row,
                          "totals": attribution.totals.to_dict(orient="records"),
                          "pareto_k": attribution.pareto_k}
    out["summary"] = attribution.summary
    return out


def _attribute(previous: PublishedReport, prev_dataset: Any, panel: xr.Dataset, dataset: Any, content: Any,
               names: dict[str, str], previous_fit: Fit | None = None):
    from forecast.attribution import attribute_observations
    from forecast.fitfile import load_fit
    from forecast.panel import build_panel
    from forecast.update import load_update

    prev_fit = previous_fit if previous_fit is not None else load_fit(previous.path / "fit.nc")
    prev_panel = build_panel(prev_dataset, "M")
    update_file = previous.path / "update.nc"
    prev_w = load_update(update_file).log_weights if update_file.exists() else None
    return attribute_observations(
        prev_fit, prev_panel, panel, prev_dataset.observations, dataset.observations,
        previous_log_weights=prev_w, new_current=content.filtered.mean[-1],
        new_forecast=content.forecast.mean[ATTRIBUTION_HORIZON - 1], names=names, horizon=ATTRIBUTION_HORIZON)


def _plain_summary(changes: dict[str, dict[str, float]]) -> str:
    moved = sorted(changes.items(), key=lambda kv: -abs(kv[1]["change"]))
    parts = [f"{s.replace('_', ' ')} {c['change']:+.1f} points" for s, c in moved if abs(c["change"]) >= 0.5]
    if not parts:
        return "No scenario probability moved by 0.5 points or more."
    return "Change since the previous report: " + ", ".join(parts) + "."


def _publish(target: Path, report: dict[str, Any], images: dict[str, Any], extras: dict[str, Any], fit: Fit,
             source_fit: Path | None, update_result: Any, data_dir: Path) -> None:
    """Write the report directory into a temporary directory and publish it by rename."""
    from forecast.atomic import atomic_directory
    from forecast.dataset import data_files
    from forecast.fitfile import save_fit
    from forecast.report import render
    from forecast.report.config import CONFIG_NAME
    from forecast.update import save_update

    logger.info("writing %s", target)
    with atomic_directory(target) as tmp:
        snapshot = tmp / "data"
        config = data_dir / CONFIG_NAME
        for path in [*data_files(data_dir), *([config] if config.is_file() else [])]:
            dest = snapshot / path.relative_to(data_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        if source_fit is not None:
            try:
                os.link(source_fit, tmp / "fit.nc")
            except OSError:
                shutil.copy2(source_fit, tmp / "fit.nc")
        else:
            save_fit(fit, tmp / "fit.nc")
        if update_result is not None:
            save_update(update_result, tmp / "update.nc")
        _write(tmp / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
        _write(tmp / "report.md", render.render_markdown(report, extras))
        _write(tmp / "index.html", render.render_html(report, images, extras))
        _make_readable(tmp)


def _make_readable(root: Path) -> None:
    """Reports are for reading (e.g. by a web server): directories 0755, files 0644 (temp files are private)."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
