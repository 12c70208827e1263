"""The samplers' step-size schedules as recipe options: cSGLD's cosine cycles and the decreasing
step, against their closed forms, and refused where they do not apply."""
import numpy as np
import pytest
import tensorflow as tf

from tfdip.errors import TfdipError
from tfdip.inference import PSGLD, CyclicalStepSize
from tfdip.recipes import CYCLE_STEPS, DECAY_STEPS, make_recipe


def test_cyclical_step_size_follows_the_cosine_of_zhang_et_al():
    schedule = CyclicalStepSize(peak=0.2, cycle=8)
    steps = np.arange(20)
    expected = 0.1 * (np.cos(np.pi * (steps % 8) / 8) + 1)
    np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, rtol=1e-5, atol=1e-7)
    assert float(schedule(8)) == pytest.approx(0.2) and float(schedule(4)) == pytest.approx(0.1)
    assert CyclicalStepSize.from_config(schedule.get_config()).cycle == 8
    with pytest.raises(TfdipError, match="cycle"):
        CyclicalStepSize(0.1, 1)


def _rates(optimizer, steps):
    """The optimizer's learning rate at each of ``steps`` (Keras evaluates its schedule at the
    optimizer's iteration counter)."""
    optimizer.build([tf.Variable(tf.zeros(3))])
    rates = []
    for step in steps:
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    return np.array(rates)


@pytest.mark.parametrize("method", ["psgld", "sgld"])
def test_recipes_give_the_optimizer_the_schedule(method):
    lr = 1e-3 if method == "psgld" else 1e-7

    def optimizer(schedule):
        return make_recipe(method, "denoising", iterations=100, learning_rate=lr,
                           schedule=schedule).optimizer()

    cycle = _rates(optimizer("cyclical"), range(2 * CYCLE_STEPS))
    assert cycle[0] == pytest.approx(2 * lr, rel=1e-5) and cycle[CYCLE_STEPS] == cycle[0]
    # mean step lr (1 + 1/L): sum_{k<L} cos(pi k / L) = 1
    assert cycle[:CYCLE_STEPS].mean() == pytest.approx(lr * (1 + 1 / CYCLE_STEPS), rel=1e-5)
    decay = _rates(optimizer("decay"), (0, DECAY_STEPS, 2 * DECAY_STEPS))
    np.testing.assert_allclose(decay[:2], [4 * lr, lr], rtol=1e-5)
    assert decay[2] < lr
    np.testing.assert_allclose(_rates(optimizer("constant"), (0, 700)), lr, rtol=1e-6)


def test_a_psgld_step_uses_the_scheduled_step_size():
    """One PSGLD step from w = 0 with zero gradient: the preconditioner is 1/sqrt(1e-8) and the
    update is sqrt(eps_t G) xi, so its size scales with sqrt(eps_t)."""
    sizes = []
    for step in (0, 4):
        w = tf.Variable(tf.zeros(2000))
        optimizer = PSGLD(CyclicalStepSize(peak=1e-6, cycle=8), seed=1, prior_sigma=None)
        optimizer.build([w])
        optimizer.iterations.assign(step)
        optimizer.apply_gradients([(tf.zeros(2000), w)])
        sizes.append(float(tf.math.reduce_std(w)))
    assert sizes[1] / sizes[0] == pytest.approx(np.sqrt(0.5), rel=0.05)


@pytest.mark.parametrize("method", ["sgd", "paper", "mala"])
def test_schedules_are_refused_where_they_do_not_apply(method):
    with pytest.raises(TfdipError, match="applies to the Langevin optimizers"):
        make_recipe(method, "denoising", iterations=100, schedule="cyclical")
    with pytest.raises(TfdipError, match="schedule must be one of"):
        make_recipe("psgld", "denoising", schedule="warm")
