"""The scheduled probability report: content, plots, rendering, atomic publishing and the pipeline.

Entry point: :func:`forecast.report.pipeline.run_report`. The layout of a report directory, the schema of
``report.json`` and the exit codes of ``forecast report`` are documented in ``docs/report.md``.
"""
