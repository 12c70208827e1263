"""DIP theory in code: the infinite-width covariance of DIP generators and TFP kernels built on it.

- :mod:`~tfdip.kernels.maps`: second-moment maps of single layers (ReLU, LeakyReLU, erf, sigmoid,
  conv, BatchNorm, the input code).
- :mod:`~tfdip.kernels.algebra`: :class:`Covariance` nodes composing those maps layer by layer,
  with down-sampling, up-sampling, pooling and skip connections.
- :mod:`~tfdip.kernels.network`: :func:`kernel_of`, the covariance of a Keras network read from
  its own layer graph (:mod:`~tfdip.kernels.field`: what a tensor is to the maps;
  :mod:`~tfdip.kernels.keras_layers`: Keras' layers as maps), with the weight variances of its
  initialisers (:mod:`~tfdip.kernels.initializers`).
- :mod:`~tfdip.kernels.psd`: ``tfp.math.psd_kernels`` kernels (:class:`DIPKernel`,
  :class:`ArcCosineKernel`, :class:`ArcSineKernel`, :class:`InputNoiseKernel`, baselines).
- :mod:`~tfdip.kernels.montecarlo`: the empirical covariance of random networks, to check the theory.
- :func:`plot_kernel`: a figure of an architecture's kernel.
"""
from tfdip.kernels.algebra import (DIP_INPUT_MEAN, DIP_INPUT_VARIANCE, Covariance, InputNoise,
                                   Moments, add, channel_average)
from tfdip.kernels.field import Field
from tfdip.kernels.network import kernel_of
from tfdip.kernels.lattice import offset_grid
from tfdip.kernels.montecarlo import (Comparison, CovarianceEstimate, monte_carlo_covariance,
                                      sample_input)
from tfdip.kernels.plot import plot_kernel
from tfdip.kernels.psd import (ArcCosineKernel, ArcSineKernel, DIPKernel, InputNoiseKernel,
                               baseline_kernel)

__all__ = ["ArcCosineKernel", "ArcSineKernel", "Comparison", "Covariance", "CovarianceEstimate",
           "DIPKernel", "DIP_INPUT_MEAN", "DIP_INPUT_VARIANCE", "Field", "InputNoise", "InputNoiseKernel",
           "Moments", "add", "baseline_kernel", "channel_average", "kernel_of",
           "monte_carlo_covariance", "offset_grid", "plot_kernel", "sample_input"]
