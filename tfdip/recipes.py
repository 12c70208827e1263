"""Inference recipes: which optimizer, loss, regularisers and sampling schedule a method uses.

Methods (reference.md section 3):

``sgd``     the DIP baseline (Ulyanov et al.): PyTorch-style Adam, MSE loss, input jitter, output
            EMA (0.99), 5 dB roll-back. The result is the EMA image; the last iterate is reported too.
``paper``   the GP-DIP authors' "SGLD" as their code ran it: Adam with L2 weight decay 5e-8, then
            N(0, (2 lr)^2) noise on conv kernels, MSE loss, input jitter; posterior mean of the
            outputs after burn-in (35% of the run), a sample every iterations/400 steps.
``sgld``    textbook SGLD (Welling & Teh) on the Gaussian likelihood with the known sigma and a
            N(0, 1) weight prior.
``psgld``   preconditioned SGLD (Li et al. 2016, TFP's update) on the same posterior. On noise-free
            observations (inpainting, super-resolution with sigma 0) it takes 10-40x larger,
            decreasing steps and DIP's input jitter (``NOISE_FREE_PSGLD_LEARNING_RATE``).
``mala``, ``ula``  TFP MCMC kernels over the weights (see :mod:`tfdip.inference.mcmc`).

``iterations="auto"`` (for ``paper``, ``sgld`` and ``psgld``; not yet their default: on one 64x64
denoising crop the rule had not stopped ``psgld`` by step 4,000, see the README) reads the budget
from the chain (:mod:`tfdip.inference.budget`): burn-in ends when the loss stops drifting, and
sampling stops when the Monte Carlo error of the posterior mean is a tenth of the posterior std,
or at ``max_iterations`` steps (``Recipe.iterations`` is then that cap; ``Recipe.budget`` holds
the rules, ``burn_in`` is ``"auto"``).

``stop="wmv"`` (``sgd`` only) stops the DIP baseline by ES-WMV (:mod:`tfdip.inference.wmv`) and
returns the iterate of smallest windowed variance; ``iterations`` (default
``WMV_MAX_ITERATIONS``) is then its cap.
"""
from __future__ import annotations

import dataclasses

from tfdip.errors import TfdipError
from tfdip.inference.budget import BudgetRules
from tfdip.inference.noise import NoiseVariancePrior
from tfdip.inference.optimizers import PSGLD, SGLD, NoisyAdam
from tfdip.inference.schedules import CyclicalStepSize, LangevinDecay

OPTIMIZER_METHODS = ("sgd", "paper", "sgld", "psgld")
MCMC_METHODS = ("mala", "ula")
METHODS = OPTIMIZER_METHODS + MCMC_METHODS

# DIP's input-noise std per task (reference.md section 3).
INPUT_NOISE = {"denoising": 1.0 / 30.0, "inpainting": 0.03, "superresolution": 0.03}
# psgld: 1e-3 beat 1e-4 by 1.1 dB (posterior mean, same coverage) on a 64x64 denoising crop
# (benchmarks/results/bayes_denoising.md, step-size tuning).
DEFAULT_LEARNING_RATE = {"sgd": 0.01, "paper": 0.01, "sgld": 1e-7, "psgld": 1e-3,
                         "mala": 1e-4, "ula": 1e-4}
DEFAULT_ITERATIONS = {"sgd": 1800, "paper": 3000, "sgld": 3000, "psgld": 3000,
                      "mala": 1000, "ula": 1000}
#: Methods whose budget can be read from the chain (``iterations="auto"``).
AUTO_METHODS = ("paper", "sgld", "psgld")
#: The cap of an automatic budget, and its thinning (a sample every AUTO_THIN steps).
DEFAULT_MAX_ITERATIONS = 10000
AUTO_THIN = 10
#: Early-stopping rules of the ``sgd`` method, and the cap of a run stopped by ES-WMV.
STOP_RULES = ("wmv",)
WMV_MAX_ITERATIONS = 5000
#: Step-size schedules of sgld / psgld around the step size lr: ``constant``; ``cyclical``
#: (cSGLD's cosine cycles of CYCLE_STEPS steps from 2 lr down to 0: mean step lr); ``decay``
#: (Welling & Teh's eps_t = a (b + t)^-0.55 from DECAY_START x lr at step 0 to lr at DECAY_STEPS,
#: smaller after).
SCHEDULES = ("constant", "cyclical", "decay")
CYCLE_STEPS = 500
DECAY_START, DECAY_STEPS = 4.0, 3000
# Noise level of the Gaussian likelihood for noise-free tasks (inpainting, super-resolution), and
# the starting value of a sampled noise level.
NOISE_FREE_SIGMA = 0.01
# psgld on noise-free observations: DIP's input jitter and a decreasing step from 4e-2 down to
# 1e-2 at step 3000 (the "decay" schedule, Welling & Teh's eps_t = a (b + t)^-0.55), where
# denoising takes a constant 1e-3. The likelihood (sigma 0.01) is sharp, and the pSGLD drift,
# about lr / 2 per weight and step whatever the gradient's scale, is what sets how fast the known
# pixels are fitted: at lr 1e-3 the chain was still far from them after 3000 steps. Measured on
# 64x64 inpainting crops in benchmarks/results/inpainting_ablation.md (posterior mean, PSNR with
# the known pixels kept): see the README's inpainting section.
NOISE_FREE_PSGLD_LEARNING_RATE = 1e-2
NOISE_FREE_PSGLD_SCHEDULE = "decay"
NOISE_MODES = ("fixed", "sampled")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything :class:`tfdip.DeepImagePrior` and its optimizer need for one method."""

    method: str
    iterations: int
    learning_rate: float
    likelihood: str
    likelihood_sigma: float | None
    input_noise_std: float
    ema_decay: float | None
    rollback_db: float | None
    burn_in: int | str | None
    thin: int
    noise: str = "fixed"
    budget: BudgetRules | None = None
    stop: str | None = None
    schedule: str = "constant"

    @property
    def is_bayesian(self) -> bool:
        return self.burn_in is not None

    @property
    def is_auto(self) -> bool:
        """Whether burn-in and stopping are read from the chain (``iterations="auto"``)."""
        return self.budget is not None

    @property
    def noise_prior(self) -> NoiseVariancePrior | None:
        """The prior of a sampled likelihood noise level (Jeffreys'), or None when it is fixed."""
        return NoiseVariancePrior() if self.noise == "sampled" else None

    def step_size(self):
        """The Langevin step size: ``learning_rate``, or its schedule (see ``SCHEDULES``)."""
        if self.schedule == "cyclical":
            return CyclicalStepSize(peak=2.0 * self.learning_rate, cycle=CYCLE_STEPS)
        if self.schedule == "decay":
            return LangevinDecay.from_endpoints(DECAY_START * self.learning_rate,
                                                self.learning_rate, DECAY_STEPS)
        return self.learning_rate

    def optimizer(self, seed: int = 0):
        """A fresh Keras 3 optimizer for this recipe."""
        if self.method == "sgd":
            return NoisyAdam(learning_rate=self.learning_rate, weight_decay=0.0, noise_scale=0.0,
                             seed=seed)
        if self.method == "paper":
            return NoisyAdam(learning_rate=self.learning_rate, weight_decay=5e-8, noise_scale=2.0,
                             seed=seed)
        if self.method == "sgld":
            return SGLD(learning_rate=self.step_size(), prior_sigma=1.0, seed=seed)
        if self.method == "psgld":
            return PSGLD(learning_rate=self.step_size(), prior_sigma=1.0, seed=seed)
        raise TfdipError(f"method {self.method!r} is not an optimizer method")


def make_recipe(method: str, task: str, *, iterations=None, learning_rate=None, burn_in=None,
                thin=None, sigma=None, input_noise_std=None, noise="fixed", max_iterations=None,
                budget=None, stop=None, schedule=None) -> Recipe:
    """The recipe for ``method`` on ``task`` with the defaults above, overridden where given.

    ``sigma`` is the observation noise std (for the Gaussian likelihood of the Langevin methods);
    for noise-free tasks it defaults to ``NOISE_FREE_SIGMA``. ``noise="sampled"`` makes the Langevin
    methods sample the noise variance under Jeffreys' prior (:mod:`tfdip.inference.noise`),
    starting from that sigma.

    ``iterations`` is a whole number of steps or ``"auto"`` (see the module docstring), whose cap
    is ``max_iterations`` (default ``DEFAULT_MAX_ITERATIONS``) and whose rules are ``budget`` (a
    :class:`tfdip.inference.budget.BudgetRules`; default its defaults). Options that do not apply
    (a burn-in with ``"auto"``, a cap or rules without it) are refused. ``stop="wmv"`` is the
    ``sgd`` method's ES-WMV early stop (module docstring). ``schedule`` (``sgld``, ``psgld``) is
    one of ``SCHEDULES``; None is the method's default (``NOISE_FREE_PSGLD_SCHEDULE`` for psgld
    on noise-free observations, else constant).
    """
    if method not in METHODS:
        raise TfdipError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if task not in INPUT_NOISE:
        raise TfdipError(f"unknown task {task!r}; choose one of {', '.join(INPUT_NOISE)}")
    if stop is not None and (stop not in STOP_RULES or method != "sgd"):
        raise TfdipError(f"stop={stop!r} is not a stopping rule of {method}: the sampling "
                         f"methods stop by their budget; sgd stops by {', '.join(STOP_RULES)}"
                         if method != "sgd" else f"unknown stopping rule {stop!r}; use "
                         f"{', '.join(STOP_RULES)}")
    if schedule is not None and schedule not in SCHEDULES:
        raise TfdipError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule not in (None, "constant") and method not in ("sgld", "psgld"):
        raise TfdipError(f"a {schedule} step-size schedule applies to the Langevin optimizers "
                         f"(sgld, psgld), not to {method}")
    if iterations is None:
        iterations = WMV_MAX_ITERATIONS if stop else DEFAULT_ITERATIONS[method]
    auto = isinstance(iterations, str) and iterations == "auto"
    if auto:
        iterations, burn_in, thin, budget = _auto_budget(method, max_iterations, burn_in, thin,
                                                         budget)
    else:
        given = [name for name, value in (("max_iterations", max_iterations), ("budget", budget))
                 if value is not None]
        if given:
            raise TfdipError(f"{' and '.join(given)} (--max-iterations) apply to iterations "
                             f"'auto' (the automatic budget), not to a fixed number of iterations")
        iterations = _whole_steps("iterations", iterations)
    # The noise-free defaults of psgld (see NOISE_FREE_PSGLD_LEARNING_RATE). A sampled noise level
    # keeps no jitter by default: it reads the misfit, which the jitter inflates.
    noise_free_psgld = method == "psgld" and task != "denoising" and not sigma
    if learning_rate is None:
        learning_rate = (NOISE_FREE_PSGLD_LEARNING_RATE if noise_free_psgld
                         else DEFAULT_LEARNING_RATE[method])
    if schedule is None:
        schedule = NOISE_FREE_PSGLD_SCHEDULE if noise_free_psgld else "constant"
    learning_rate = float(learning_rate)
    if not learning_rate > 0:
        raise TfdipError(f"the learning rate must be > 0, got {learning_rate}")
    bayesian = method != "sgd"
    if bayesian and not auto:
        burn_in = int(0.35 * iterations) if burn_in is None else int(burn_in)
        thin = max(1, iterations // 400) if thin is None else int(thin)
        if burn_in >= iterations:
            raise TfdipError(f"burn-in ({burn_in}) must be smaller than iterations ({iterations})")
    if bayesian and thin < 1:
        raise TfdipError(f"thin must be at least 1, got {thin}")
    if not bayesian:
        given = [name for name, value in (("burn-in", burn_in), ("thin", thin)) if value is not None]
        if given:
            raise TfdipError(f"{' and '.join(given)} apply to the sampling methods (paper, sgld, "
                             f"psgld, mala, ula), not to {method}")
        burn_in, thin = None, 1
    langevin = method in ("sgld", "psgld", "mala", "ula")
    if sigma is not None and sigma < 0:
        raise TfdipError(f"sigma must be >= 0, got {sigma}")
    likelihood_sigma = (sigma or NOISE_FREE_SIGMA) if langevin else None
    if noise not in NOISE_MODES:
        raise TfdipError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
    if noise == "sampled" and method not in ("sgld", "psgld"):
        raise TfdipError(f"a sampled noise level needs a Langevin optimizer (sgld, psgld), not {method}")
    if input_noise_std is None:
        jitter = not langevin or noise_free_psgld and noise == "fixed"
        input_noise_std = INPUT_NOISE[task] if jitter else 0.0
    return Recipe(
        method=method, iterations=iterations, learning_rate=learning_rate,
        likelihood="gaussian" if langevin else "mse", likelihood_sigma=likelihood_sigma,
        input_noise_std=float(input_noise_std), ema_decay=0.99,
        rollback_db=None if langevin else 5.0, burn_in=burn_in, thin=thin,
        noise=noise, budget=budget, stop=stop, schedule=schedule)


def refuse_for_mcmc(method: str, options: dict) -> None:
    """Refuse, for a TFP MCMC ``method`` (``mala``, ``ula``: each chain runs as one graph), the
    ``options`` (name -> value) that only the optimizer methods have and that were given (truthy)."""
    given = [name for name, value in options.items() if value]
    if given and method in MCMC_METHODS:
        raise TfdipError(f"{', '.join(given)} work{'s' * (len(given) == 1)} with the optimizer "
                         f"methods ({', '.join(OPTIMIZER_METHODS)}), not with method {method}, "
                         f"which runs each chain as one graph")


def _whole_steps(name, value) -> int:
    """``value`` as a whole number of steps >= 1 (else a one-line error)."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise TfdipError(f"{name} must be a whole number >= 1 or 'auto', got {value!r}")
    try:
        steps = int(value)
    except (TypeError, ValueError):
        raise TfdipError(f"{name} must be a whole number >= 1 or 'auto', got {value!r}") from None
    if steps < 1:
        raise TfdipError(f"{name} must be at least 1, got {steps}")
    return steps


def _auto_budget(method, max_iterations, burn_in, thin, budget):
    """``(cap, "auto", thin, rules)`` of an automatic budget, refusing what does not apply."""
    if method not in AUTO_METHODS:
        raise TfdipError(f"iterations 'auto' reads burn-in and stopping from a sampling chain "
                         f"({', '.join(AUTO_METHODS)}); give {method} a number of iterations")
    if burn_in is not None:
        raise TfdipError("with iterations 'auto' the burn-in is read from the chain; give a "
                         "number of iterations to set the burn-in yourself")
    cap = DEFAULT_MAX_ITERATIONS if max_iterations is None else _whole_steps("max_iterations",
                                                                             max_iterations)
    if budget is not None and not isinstance(budget, BudgetRules):
        raise TfdipError(f"budget must be a BudgetRules, got {type(budget).__name__}")
    rules = budget or BudgetRules()
    earliest = rules.window + (rules.confirmations - 1) * rules.check_every
    if cap <= earliest:
        raise TfdipError(f"max_iterations ({cap}) must be more than {earliest} steps: burn-in "
                         f"cannot end before the drift test has seen {rules.confirmations} "
                         f"windows of {rules.window} steps")
    thin = AUTO_THIN if thin is None else int(thin)
    return cap, "auto", thin, rules
