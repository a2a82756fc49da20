"""The analyst notebook: committed without outputs, with a parameter cell, and it runs end to end.

The executed tests run ``notebooks/analyst_walkthrough.ipynb`` with nbclient in a temporary working directory,
overriding its parameter cell the way papermill does (a cell tagged ``injected-parameters`` right after the cell
tagged ``parameters``), in a kernel that runs this interpreter.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecast.scenarios import SCENARIOS

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "analyst_walkthrough.ipynb"
BUNDLED_DATA = Path(__file__).resolve().parent.parent / "data"
#: Settings the parameter cell must define (the documented way to run the notebook on other data or settings).
PARAMETERS = ("DATA_DIR", "DRAWS", "TUNE", "CHAINS", "SEED")
#: One line per scenario in the last cell's output: id, mean, [lower, upper].
FINAL_LINE = re.compile(r"^(\w+)\s+([0-9.]+)\s+\[([0-9.]+), ([0-9.]+)\]$")
#: The last cell prints four probabilities with 4 decimals: rounding moves their sum by at most 4 × 0.00005.
SUM_TOLERANCE = 4 * 0.5e-4 + 1e-9
KERNEL_NAME = "forecast-notebook-test"


def _notebook_json() -> dict[str, Any]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


# -- the committed file ------------------------------------------------------------------------------------------
def test_notebook_is_committed_without_outputs() -> None:
    code = [c for c in _notebook_json()["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    dirty = [c.get("id", i) for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"cells committed with outputs or execution counts: {dirty} (clear outputs before committing)"


def test_first_code_cell_is_a_literal_parameter_cell() -> None:
    code = [c for c in _notebook_json()["cells"] if c["cell_type"] == "code"]
    first = code[0]
    assert "parameters" in first.get("metadata", {}).get("tags", []), "the first code cell must be tagged 'parameters'"
    assigned = {}
    for node in ast.parse(_source(first)).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "the parameter cell holds assignments only"
        assigned[node.targets[0].id] = ast.literal_eval(node.value)  # literals only: overridable by injection
    missing = [p for p in PARAMETERS if p not in assigned]
    assert not missing, f"parameter cell lacks {missing}"
    assert all(isinstance(assigned[p], int) and assigned[p] > 0 for p in ("DRAWS", "TUNE", "CHAINS"))
    assert [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])] == [first]


# -- executing it ------------------------------------------------------------------------------------------------
@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec that runs this interpreter, found before any user-installed ``python3`` spec."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "forecast test kernel", "language": "python",
    }), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL_NAME


def _execute(workdir: Path, kernel: str, overrides: dict[str, Any], tail: str = "") -> Any:
    """Run the notebook with ``overrides`` injected after its parameter cell and ``tail`` appended."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    if tail:
        nb.cells.append(nbformat.v4.new_code_cell(tail))
    workdir.mkdir(parents=True, exist_ok=True)
    NotebookClient(nb, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def _stdout(nb: Any, cell_id: str) -> str:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o["text"] for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _images(nb: Any) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _final_probabilities(nb: Any) -> pd.DataFrame:
    """Parse the notebook's last cell: one line per scenario, then the total."""
    lines = _stdout(nb, "final").strip().splitlines()
    rows = [FINAL_LINE.match(line) for line in lines[1:-1]]
    assert all(rows), f"unexpected final output:\n{_stdout(nb, 'final')}"
    table = pd.DataFrame([(m[1], float(m[2]), float(m[3]), float(m[4])) for m in rows],
                         columns=["scenario", "mean", "lower", "upper"])
    assert lines[-1].split()[0] == "total"
    return table


def _check_probabilities(table: pd.DataFrame) -> None:
    assert table["scenario"].tolist() == list(SCENARIOS)
    assert abs(table["mean"].sum() - 1.0) <= SUM_TOLERANCE
    assert ((table["mean"] >= 0) & (table["mean"] <= 1)).all()
    # a 90% equal-tailed interval need not contain the mean of a skewed distribution, but it is ordered
    assert ((table["lower"] >= 0) & (table["lower"] <= table["upper"]) & (table["upper"] <= 1)).all()


def _trimmed_data(src: Path, dst: Path, start: str) -> Path:
    """A copy of a data directory that starts at ``start`` (fewer periods: a faster fit, same structure)."""
    import shutil

    dst = Path(shutil.copytree(src, dst))
    catalog = dst / "catalog.toml"
    catalog.write_text(re.sub(r"^(coverage_start\s*=\s*)(\d{4}-\d{2}-\d{2})",
                              lambda m: m[1] + max(m[2], start), catalog.read_text(encoding="utf-8"), flags=re.M),
                       encoding="utf-8")
    for path in (dst / "observations").glob("*.csv"):
        rows = pd.read_csv(path, dtype=str, keep_default_na=False)
        rows[rows["date"] >= start].to_csv(path, index=False)
    labels = pd.read_csv(dst / "labels.csv", dtype=str, keep_default_na=False)
    labels = labels[labels["end"] >= start[:7]].copy()
    labels.loc[labels["start"] < start[:7], "start"] = start[:7]
    labels.to_csv(dst / "labels.csv", index=False)
    return dst


@pytest.mark.fit
def test_notebook_fits_and_runs_end_to_end(tmp_path: Path, kernel_env: str) -> None:
    # The bundled data from 2016 on (120 months, same indicators and drivers) and 2 chains × 300 draws keep the
    # fit to tens of seconds; an empty reports directory makes the notebook fit rather than reuse a report.
    data = _trimmed_data(BUNDLED_DATA, tmp_path / "data", "2016-01-01")
    overrides = {"DATA_DIR": str(data), "REPORTS_DIR": str(tmp_path / "no-reports"), "DRAWS": 300, "TUNE": 300,
                 "CHAINS": 2, "SEED": 20261125}
    nb = _execute(tmp_path / "work", kernel_env, overrides)

    assert "600 posterior draws" in _stdout(nb, "fit")
    assert re.search(r"^converged: (True|False)$", _stdout(nb, "diagnostics"), flags=re.M)
    assert _images(nb) >= 4  # panel, filtered/smoothed, forecast, what-if
    assert re.search(r"^path: (update|refit_required) — ", _stdout(nb, "update"), flags=re.M)
    _check_probabilities(_final_probabilities(nb))
    assert not list((tmp_path / "work").iterdir()), "the notebook must leave its working directory clean"


@pytest.mark.fit
def test_notebook_reuses_the_latest_report_fit_and_updates(tmp_path: Path, kernel_env: str) -> None:
    # No MCMC: a fit with known parameters stands in for the latest report's fit.nc; the notebook must load it
    # instead of fitting, and absorb the appended month by reweighting.
    from forecast.dataset import load_dataset
    from forecast.fitfile import save_fit
    from forecast.panel import build_panel
    from forecast.simulate import SimIndicator, default_params, known_parameter_fit

    dataset = load_dataset(BUNDLED_DATA)
    panel = build_panel(dataset)
    coords = {k: dict(zip(panel["signal"].values.tolist(), panel[k].values.tolist(), strict=True))
              for k in ("direction_us", "direction_relations", "marker", "transform")}
    catalog = [SimIndicator(i.id, i.role, i.kind, i.group, int(coords["direction_us"][i.id]),
                            int(coords["direction_relations"][i.id]), str(coords["marker"][i.id]),
                            str(coords["transform"][i.id]))
               if i.role == "signal" else SimIndicator(i.id, i.role, "count", i.group) for i in dataset.catalog]
    # 2 × 1000 jittered draws: the weights of one new month keep an ESS far above update()'s 400
    fit = known_parameter_fit(panel, default_params(catalog), chains=2, draws=1000, jitter=0.05, seed=5)
    as_of = dataset.catalog.observed_through.isoformat()
    report = tmp_path / "reports" / as_of
    report.mkdir(parents=True)
    save_fit(fit, report / "fit.nc")
    (report / "report.json").write_text(json.dumps({"schema_version": 1, "as_of": as_of}), encoding="utf-8")

    tail = ("import json, sys\n"
            "print(json.dumps({'fitting_imported': 'forecast.fitting' in sys.modules, 'path': result.path,\n"
            "                  'current': result.current()[['scenario', 'mean']].values.tolist()}))")
    nb = _execute(tmp_path / "work", kernel_env, {"REPORTS_DIR": str(tmp_path / "reports")}, tail=tail)

    fit_out = _stdout(nb, "fit")
    assert f"reusing {report / 'fit.nc'}" in fit_out and "fitted to exactly these data" in fit_out
    assert "2000 posterior draws" in fit_out
    facts = json.loads(_stdout(nb, nb.cells[-1].id).strip().splitlines()[-1])
    assert facts["fitting_imported"] is False, "reusing a report's fit must not load the fitting code"
    assert facts["path"] == "update"
    final = _final_probabilities(nb)
    _check_probabilities(final)
    assert "(updated with " in _stdout(nb, "final").splitlines()[0]
    # what the last cell prints is the update's current probabilities, to its 4 printed decimals
    current = dict(facts["current"])
    assert all(abs(row.mean - current[row.scenario]) <= 0.5e-4 + 1e-12 for row in final.itertuples())
    assert not list((tmp_path / "work").iterdir()), "the notebook must leave its working directory clean"
