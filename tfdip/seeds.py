"""Independent random streams for every chain of a run, all derived from one seed.

Chain ``k`` of a run with seed ``s`` owns the NumPy ``SeedSequence(s, spawn_key=(k,))`` (the
``k``-th child of ``SeedSequence(s).spawn(n)`` for any ``n``), and each purpose ``p`` (the
``i``-th entry of :data:`PURPOSES`) owns its child ``SeedSequence(s, spawn_key=(k, i))``. A
chain's streams are therefore a pure function of ``(s, k)``: running chain ``k`` alone, on
another machine, reproduces chain ``k`` of a many-chain run exactly, whatever the number of
chains. SeedSequence hashes the whole ``(s, spawn_key)`` into its state, so the streams of two
chains, or of two purposes, do not overlap the way ``seed + k`` offsets do.

Purposes:

* ``weights``: the generator's weight initialisation (Keras' global seed while it is built);
* ``input``: the fixed network input ``z``;
* ``jitter``: the per-step input jitter (a ``keras.random.SeedGenerator``);
* ``sampler``: the optimizer's / MCMC kernel's noise (Langevin, the authors' weight noise);
* ``trace``: the subset of output pixels traced for ESS and R-hat (chain 0's stream serves every
  chain, so that all chains trace the same pixels);
* ``noise_level``: the Gibbs draws of a sampled likelihood noise level (:mod:`tfdip.inference.noise`).
"""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from tfdip.errors import TfdipError

PURPOSES = ("weights", "input", "jitter", "sampler", "trace", "noise_level")

# Seeds handed to Keras / TF are kept below 2^31 (what every consumer accepts).
_SEED_BITS = 31


def _check_index(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise TfdipError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class ChainSeeds:
    """The integer seed (in [0, 2^31)) of each purpose of one chain; see the module docstring."""

    seed: int
    chain: int
    weights: int
    input: int
    jitter: int
    sampler: int
    trace: int
    noise_level: int

    def rng(self, purpose: str) -> np.random.Generator:
        """A NumPy generator on the full-entropy SeedSequence of ``purpose``."""
        return np.random.default_rng(purpose_sequence(self.seed, self.chain, purpose))


def purpose_sequence(seed: int, chain: int, purpose: str) -> np.random.SeedSequence:
    """``SeedSequence(seed, spawn_key=(chain, PURPOSES.index(purpose)))``."""
    if purpose not in PURPOSES:
        raise TfdipError(f"unknown random stream {purpose!r}; one of {', '.join(PURPOSES)}")
    return np.random.SeedSequence(_check_index("seed", seed),
                                  spawn_key=(_check_index("chain", chain), PURPOSES.index(purpose)))


def chain_seeds(seed: int, chain: int = 0) -> ChainSeeds:
    """The seeds of chain ``chain`` of a run seeded with ``seed`` (both whole numbers >= 0)."""
    values = {purpose: int(purpose_sequence(seed, chain, purpose).generate_state(1, np.uint64)[0]
                           >> np.uint64(64 - _SEED_BITS))
              for purpose in PURPOSES}
    return ChainSeeds(seed=int(seed), chain=int(chain), **values)
