"""Fast synthetic fitter for the report tests: known parameters plus jitter, no MCMC."""

from __future__ import annotations

from forecast.simulate import SimIndicator, default_params, known_parameter_fit


def _sim_catalog(panel):
    out = []
    for s in panel["signal"].values.tolist():
        sig = panel.sel(signal=s)
        out.append(SimIndicator(id=str(s), role="signal", kind=str(sig["kind"].item()), group=str(sig["group"].item()),
                                direction_us=int(sig["direction_us"].item()),
                                direction_relations=int(sig["direction_relations"].item()),
                                marker=str(sig["marker"].item()), transform=str(sig["transform"].item())))
    for d in panel["driver"].values.tolist():
        out.append(SimIndicator(id=str(d), role="driver", kind="count", group="threat", direction_us=0,
                                direction_relations=0, marker="", transform="", rate=1.0))
    return out


def synthetic_fitter(draws: int = 100, jitter: float = 0.05, converged: bool = True, calls: list | None = None):
    """A fitter with ``run_report``'s signature that returns a known-parameter fit of the panel.

    Parameters
    ----------
    draws : int
        Posterior draws (one chain).
    jitter : float
        Per-draw noise around the parameters.
    converged : bool
        When False the returned fit says its convergence gate failed.
    calls : list, optional
        Each call appends the panel it was given.
    """

    def fitter(panel, *, settings, catalog_text, data_sha256, progress=True):
        import dataclasses
        import json

        if calls is not None:
            calls.append(panel)
        params = default_params(_sim_catalog(panel))
        fit = known_parameter_fit(panel, params, draws=draws, jitter=jitter, seed=settings.seed)
        tree = fit.tree.copy()
        tree.attrs["data_sha256"] = data_sha256
        if not converged:
            tree.attrs["converged"] = 0
            tree.attrs["diagnostics"] = json.dumps({"passed": False, "max_rhat": 1.4, "min_ess_bulk": 12.0,
                                                    "min_ess_tail": 9.0, "divergences": 37,
                                                    "failures": ["R-hat 1.40 > 1.01 for loading"]})
        from forecast.fitfile import content_sha256

        tree.attrs["content_sha256"] = content_sha256(tree)
        return dataclasses.replace(fit, tree=tree)

    return fitter




def append_month(data_dir, rows: str, through: str, previous_through: str) -> None:
    """Append observation rows (CSV lines without header) as a new file and move ``observed_through`` forward.

    Parameters
    ----------
    data_dir : pathlib.Path
        Data directory to change in place.
    rows : str
        CSV lines ``date,indicator,value,source,note``.
    through : str
        New ``observed_through`` (ISO date).
    previous_through : str
        The current one, replaced in the catalog.
    """
    catalog = data_dir / "catalog.toml"
    text = catalog.read_text(encoding="utf-8")
    assert f"observed_through = {previous_through}" in text
    catalog.write_text(text.replace(f"observed_through = {previous_through}", f"observed_through = {through}"),
                       encoding="utf-8")
    new_file = data_dir / "observations" / f"new_{through}.csv"
    new_file.write_text("date,indicator,value,source,note\n" + rows, encoding="utf-8")


#: A month of tiny-dataset events, one of them with markup in its source and note.
TINY_JANUARY = ('2022-01-12,talks,1,Ministry <b>release</b> 5,"<script>window.__pwned = 1</script>"\n'
                "2022-01-20,disputes,1,Statement 4,protest over a textbook\n")
