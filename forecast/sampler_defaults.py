"""Default sampler settings, shared by :func:`forecast.fitting.fit`, ``forecast fit`` and the report's refits.

Kept in a module of their own, with no imports, so that the command line can show them without loading the
fitting stack. The reasons for the values are in ``docs/model.md`` ("Fitting").
"""

from __future__ import annotations

__all__ = ["DEFAULT_CHAINS", "DEFAULT_DRAWS", "DEFAULT_STARTS", "DEFAULT_TARGET_ACCEPT", "DEFAULT_TUNE"]

#: Posterior draws per chain: the gate's ESS floor (400) with a margin on the bundled data (the slowest
#: parameter, a rare signal's loading, mixes at about 0.15 effective draws per draw).
DEFAULT_DRAWS = 1000
#: Tuning (warm-up) steps per chain, in which NUTS adapts its step size and diagonal mass matrix; on the bundled
#: data 400 left some chains with step sizes a third too small (more leapfrog steps per draw than they save).
DEFAULT_TUNE = 500
#: Number of chains; the gate's R-hat and label-switching checks compare them.
DEFAULT_CHAINS = 4
#: NUTS target acceptance rate: high enough to keep the rare-event tail of the trilateral-exercise intercept
#: free of divergences on the bundled data.
DEFAULT_TARGET_ACCEPT = 0.95
#: Optimisations of the posterior density before sampling (``forecast.start.find_mode``): the moment start and 15
#: jittered copies. On simulated panels the best of 16 reached the true parameters' mode where the moment start
#: alone did not; each optimisation takes about 0.1 s once the density is compiled.
DEFAULT_STARTS = 16
