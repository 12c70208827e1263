"""When a chain's sampling starts and stops by itself: the automatic budget as a Keras callback.

:class:`AutoBudget` applies the rules of :mod:`tfdip.inference.budget` to a
:class:`tfdip.DeepImagePrior` run with ``burn_in="auto"``, at every multiple of
``rules.check_every`` steps (``DeepImagePrior.fit`` calls ``on_step_interval`` there; the steps in
between read nothing back to the host):

1. until burn-in has ended, the drift test on the loss of the last ``rules.window`` steps; after
   ``rules.confirmations`` drift-free checks in a row, sampling starts at that step;
2. then, once the trace holds ``rules.min_rows`` rows, the stopping rule on the Monte Carlo error
   of the chain's posterior mean; when it holds, the run stops at that step;
3. a run that reaches ``cap`` steps first stops there ("cap reached").

Every decision is written into the model's variables (``sampling_start``, ``drift_streak``,
``stop_step``, ``stop_reason``), which its checkpoint holds; placed before the checkpoint
callback, the decision of step t is in the checkpoint of step t, so a resumed run decides as the
uninterrupted one.

:class:`WmvStop` ends a run whose ES-WMV tracker (:mod:`tfdip.inference.wmv`) has waited its
patience, checked at the same log boundaries (the tracker freezes at that point, so the result
does not depend on when the host notices).
"""
from __future__ import annotations

import keras

from tfdip.dip import NOT_STARTED, STOP_REASONS
from tfdip.inference.budget import BudgetRules, drift_test, mcse_rule_met, next_streak
from tfdip.inference.diagnostics import monte_carlo_error

RULE_MET, CAP_REACHED = 1, 2


class AutoBudget(keras.callbacks.Callback):
    """Burn-in and stopping read from the chain (see the module docstring).

    Args:
        rules: the :class:`tfdip.inference.budget.BudgetRules`.
        cap: the most steps the chain may run (``--max-iterations``).
    """

    def __init__(self, rules: BudgetRules, cap: int):
        super().__init__()
        self.rules = rules
        self.cap = int(cap)
        self.step_interval = rules.check_every

    def on_step_interval(self, step):
        dip = self.model
        if int(dip.stop_reason.numpy()):
            dip.stop_training = True
        elif int(dip.sampling_start.numpy()) == NOT_STARTED:
            self._check_burn_in(dip, step)
        else:
            self._check_stop(dip, step)

    def on_train_end(self, logs=None):
        dip = self.model
        step = int(dip.step.numpy())
        if not int(dip.stop_reason.numpy()) and step >= self.cap:
            _stop(dip, step, CAP_REACHED)

    def _check_burn_in(self, dip, step):
        rules = self.rules
        if step < rules.window:
            return
        test = drift_test(dip.recent_losses(), num_batches=rules.num_batches, z_max=rules.z_max)
        streak = next_streak(int(dip.drift_streak.numpy()), test)
        dip.drift_streak.assign(streak)
        if streak >= rules.confirmations:
            dip.sampling_start.assign(step)

    def _check_stop(self, dip, step):
        trace = dip.traced_samples()
        if len(trace) >= self.rules.min_rows and mcse_rule_met(monte_carlo_error([trace]),
                                                               self.rules.threshold):
            _stop(dip, step, RULE_MET)


class WmvStop(keras.callbacks.Callback):
    """Stops the run at the first multiple of ``check_every`` steps at which ES-WMV is done."""

    def __init__(self, check_every: int):
        super().__init__()
        self.step_interval = int(check_every)

    def on_step_interval(self, step):
        if bool(self.model.wmv.done.numpy()):
            self.model.stop_training = True


def wmv_record(dip) -> dict:
    """ES-WMV's outcome for ``dip``: the step whose output it keeps (``best_step``, counting
    steps from 1), ``stopped_at`` (the step at which its patience ran out, None if the run
    ended first) and ``reason`` (``"patience"`` or ``"cap reached"``)."""
    done = bool(dip.wmv.done.numpy())
    best = int(dip.wmv.best_step.numpy())
    return {"rule": "wmv", "window": dip.wmv.window, "patience": dip.wmv.patience,
            "best_step": best + 1 if best >= 0 else None,
            "stopped_at": best + 1 + dip.wmv.patience if done else None,
            "reason": "patience" if done else "cap reached"}


def _stop(dip, step, reason):
    dip.stop_step.assign(step)
    dip.stop_reason.assign(reason)
    dip.stop_training = True


def budget_record(dip) -> dict:
    """What the automatic budget decided for the chain of ``dip``: ``burn_in_end`` (the step
    sampling started, None if the loss never stopped drifting), ``stopped_at`` and ``reason``
    (``"rule met"``, ``"cap reached"``, or None while it runs)."""
    start = int(dip.sampling_start.numpy())
    reason = STOP_REASONS[int(dip.stop_reason.numpy())]
    return {"burn_in_end": None if start == NOT_STARTED else start,
            "stopped_at": int(dip.stop_step.numpy()) if reason else None, "reason": reason}
