"""Posterior inference over DIP generator weights.

- Langevin samplers as Keras 3 optimizers: :class:`SGLD`, :class:`PSGLD`, :class:`NoisyAdam`
  (the GP-DIP authors' Adam-plus-noise recipe), with the step schedules :class:`LangevinDecay`
  and :class:`CyclicalStepSize`.
- Posterior collection: :class:`RunningMoments` (Welford mean / variance, ring buffer of
  samples) and :func:`combine` (pools chains).
- Full-batch MCMC with TFP kernels (MALA / ULA) over the weights of small generators:
  :func:`sample_posterior_mcmc`, returning a :class:`McmcResult`.
- Checks: :func:`chain_diagnostics` (ESS, R-hat) and :func:`uncertainty_report` (how well the
  std map predicts the error).
"""
from tfdip.inference.calibration import uncertainty_report
from tfdip.inference.diagnostics import chain_diagnostics
from tfdip.inference.mcmc import McmcResult, sample_posterior_mcmc
from tfdip.inference.moments import RunningMoments, combine
from tfdip.inference.optimizers import PSGLD, SGLD, NoisyAdam
from tfdip.inference.schedules import CyclicalStepSize, LangevinDecay

__all__ = [
    "SGLD", "PSGLD", "NoisyAdam", "LangevinDecay", "CyclicalStepSize", "RunningMoments", "combine",
    "chain_diagnostics", "uncertainty_report", "sample_posterior_mcmc", "McmcResult",
]
