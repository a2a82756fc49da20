"""Default sampler settings, shared by :func:`forecast.fitting.fit`, ``forecast fit`` and the report's refits.

Kept in a module of their own, with no imports, so that the command line can show them without loading the
fitting stack. The reasons for the values are in ``docs/model.md`` ("Fitting").
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CHAINS",
    "DEFAULT_DRAWS",
    "DEFAULT_STARTS",
    "DEFAULT_TARGET_ACCEPT",
    "DEFAULT_TUNE",
    "QUARTERLY_DRAWS",
    "QUARTERLY_TARGET_ACCEPT",
    "default_draws",
    "default_target_accept",
]

#: Posterior draws per chain of a monthly panel: the gate's ESS floor (400) with a margin on the bundled data (the
#: slowest parameter makes 0.19-0.27 effective draws per draw over twenty seeds).
DEFAULT_DRAWS = 1000
#: Tuning (warm-up) steps per chain, in which NUTS adapts its step size and diagonal mass matrix; on the bundled
#: data 400 left some chains with step sizes a third too small (more leapfrog steps per draw than they save).
DEFAULT_TUNE = 500
#: Number of chains; the gate's R-hat and label-switching checks compare them.
DEFAULT_CHAINS = 4
#: NUTS target acceptance rate of a monthly panel: high enough to keep the rare-event tail of the
#: trilateral-exercise intercept free of divergences on the bundled data.
DEFAULT_TARGET_ACCEPT = 0.95
#: Optimisations of the posterior density before sampling (``forecast.start.find_mode``): the moment start and 15
#: jittered copies. On simulated panels the best of 16 reached the true parameters' mode where the moment start
#: alone did not; each optimisation takes about 0.1 s once the density is compiled.
DEFAULT_STARTS = 16
#: Posterior draws per chain of a quarterly panel. A third as many periods inform the same parameters, so they mix
#: more slowly: on the bundled quarterly panel the slowest (a loading magnitude) makes 0.12-0.15 effective draws per
#: draw, and with 1000 draws two of eight seeds failed the gate narrowly (R-hat 1.011 or one divergence); with 1500
#: at the target acceptance below all eight passed (docs/model.md, "Multimodality: the quarterly bundled panel").
QUARTERLY_DRAWS = 1500
#: NUTS target acceptance rate of a quarterly panel: at 0.95 one or two of eight bundled seeds had one divergence
#: (in the tails of the count intercepts' spread); at 0.97 none had.
QUARTERLY_TARGET_ACCEPT = 0.97


def default_draws(freq: str) -> int:
    """Posterior draws per chain for a panel of frequency ``freq`` (``"M"`` or ``"Q"``)."""
    return QUARTERLY_DRAWS if freq == "Q" else DEFAULT_DRAWS


def default_target_accept(freq: str) -> float:
    """NUTS target acceptance rate for a panel of frequency ``freq`` (``"M"`` or ``"Q"``)."""
    return QUARTERLY_TARGET_ACCEPT if freq == "Q" else DEFAULT_TARGET_ACCEPT
