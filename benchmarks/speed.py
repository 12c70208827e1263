"""Training-step speed of the default DIP skip net: tfdip (TensorFlow / Keras 3) against PyTorch.

One training step = forward pass of the default skip net (2,217,831 parameters) on a fixed code
z ~ U(0, 0.1) of shape (1, S, S, 32), MSE loss against a noisy S x S crop of ``house.png``
(sigma 25/255), backward pass and an Adam update (lr 0.01). tfdip's step is a plain custom training
step inside ``tf.function`` on the ``keras.Model`` that ``tfdip.nets.skip()`` builds; PyTorch's is
the usual zero_grad / backward / step on ``benchmarks/torch_skip.py`` in train mode.

Every (variant, size) runs in a fresh subprocess with the same thread count, so that the two
frameworks' thread pools never compete; variants are interleaved size by size so that a change of
machine load hits them alike. Reported: the median (and quartiles) of the timed steps after the
warm-up (which includes tracing); with ``--rounds R`` the sweep repeats R times and each (variant,
size) reports its least disturbed round. Variants:

- ``tfdip``: the library default (float32, oneDNN on, no XLA);
- ``tfdip_xla``: the same step with ``jit_compile=True``;
- ``tfdip_bf16``: the ``mixed_bfloat16`` Keras policy (bfloat16 compute, float32 weights);
- ``tfdip_no_onednn``: ``TF_ENABLE_ONEDNN_OPTS=0``;
- ``tfdip_fused_adam``: Keras' Adam with its update in TF's fused ``ResourceApplyAdam`` kernel
  (the same formula; one kernel per variable instead of about ten element-wise ops);
- ``tfdip_dip``: ``tfdip.dip.DeepImagePrior``'s own train step (jitter, roll-back guard, EMA), via
  ``fit()``, where that class is available;
- ``user_<method>``: the whole step a user runs, ``tfdip.chains.make_dip`` with the recipe of
  ``<method>`` (sgd, paper, sgld, psgld) exactly as ``tfdip denoise`` builds it (input jitter,
  roll-back guard, EMA, the sampler's update and noise), with posterior bookkeeping on every step
  (burn-in 0, thin 1: the most it can cost) and a reference image (PSNR logs); timed as
  ``DeepImagePrior.fit`` calls of ``CHUNK`` steps (several steps per ``tf.function`` call, as a
  run makes them), per-step time = call time / ``CHUNK``;
- ``user_psgld_bf16`` / ``_f16`` / ``_xla``: the same with ``precision="bfloat16"`` / ``"float16"``
  or ``jit_compile=True``;
- ablations of ``user_psgld`` (what each part of the step costs): ``_no_noise`` (the sampler's
  normal draw replaced by zeros), ``_per_variable_noise`` (one native TF draw per variable, the
  scheme before the fused draw), ``_native_noise`` (one fused draw with TF's own kernel instead
  of the XLA-compiled one), ``_tf_update`` (the optimizer's per-variable updates as TensorFlow
  ops instead of one XLA computation), ``_no_guard`` (the roll-back guard's weight copies removed),
  ``_each_step`` (one step per ``tf.function`` call with a per-step Keras callback, as before
  several steps per call);
- ``torch``: the PyTorch reference (NCHW, float32);
- ``torch_channels_last``: PyTorch with the channels-last memory format.

Work and peak: every tfdip worker counts the FLOPs of its step from the convolutions of the traced
step (forward ``Conv2D``, ``Conv2DBackpropInput`` and ``Conv2DBackpropFilter``, 2 FLOPs per
multiply-add; element-wise work is not counted) and ``conv_peak_float32`` / ``conv_peak_bfloat16``
time a standalone 3x3 convolution (128 to 128 channels, 128x128 pixels) to measure this machine's
convolution throughput; the report gives each step's achieved GFLOP/s and its fraction of that
peak (in the step's compute precision).

Usage::

    python benchmarks/speed.py                      # 64, 128, 256 px; writes benchmarks/results/
    python benchmarks/speed.py --sizes 64 --steps 5 --variants tfdip torch --out /tmp/speed
    python benchmarks/speed.py --sizes 64 128 --variants tfdip user_psgld user_psgld_no_noise \
        --name step_profile --quality-steps 0          # ablations -> results/step_profile.md
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

HERE = Path(__file__).resolve().parent


def find_image(name: str = "house.png") -> Path:
    """The benchmark image ``shared/data/denoising/<name>`` beside the repository (or beside a
    folder above it)."""
    for folder in HERE.parents:
        path = folder / "shared" / "data" / "denoising" / name
        if path.is_file():
            return path
    raise SystemExit(f"benchmark image shared/data/denoising/{name} not found above {HERE}")


IMAGE = find_image()
DEFAULT_PARAMETERS = 2_217_831
SIGMA = 25 / 255
INPUT_CHANNELS = 32

VARIANTS = {
    "tfdip": {"framework": "tf"},
    "tfdip_xla": {"framework": "tf", "jit_compile": True},
    "tfdip_bf16": {"framework": "tf", "policy": "mixed_bfloat16"},
    "tfdip_no_onednn": {"framework": "tf", "env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "tfdip_fused_adam": {"framework": "tf", "optimizer": "fused_adam"},
    "tfdip_dip": {"framework": "tf_dip"},
    **{f"user_{method}": {"framework": "tf_user", "method": method}
       for method in ("sgd", "paper", "sgld", "psgld")},
    "user_psgld_bf16": {"framework": "tf_user", "method": "psgld", "precision": "bfloat16"},
    "user_psgld_f16": {"framework": "tf_user", "method": "psgld", "precision": "float16"},
    "user_psgld_xla": {"framework": "tf_user", "method": "psgld", "jit_compile": True},
    "user_psgld_no_noise": {"framework": "tf_user", "method": "psgld", "ablation": "no_noise"},
    "user_psgld_per_variable_noise": {"framework": "tf_user", "method": "psgld",
                                      "ablation": "per_variable_noise"},
    "user_psgld_native_noise": {"framework": "tf_user", "method": "psgld",
                                "ablation": "native_noise"},
    "user_psgld_no_guard": {"framework": "tf_user", "method": "psgld", "ablation": "no_guard"},
    "user_psgld_tf_update": {"framework": "tf_user", "method": "psgld", "ablation": "tf_update"},
    "user_sgd_tf_update": {"framework": "tf_user", "method": "sgd", "ablation": "tf_update"},
    "user_psgld_each_step": {"framework": "tf_user", "method": "psgld", "ablation": "each_step"},
    "conv_peak_float32": {"framework": "conv", "dtype": "float32"},
    "conv_peak_bfloat16": {"framework": "conv", "dtype": "bfloat16"},
    "torch": {"framework": "torch"},
    "torch_channels_last": {"framework": "torch", "channels_last": True},
}
HEADLINE = ("tfdip", "torch")
CHUNK = 5            # steps per DeepImagePrior.fit call of the user-step workers
PEAK_SHAPE = (1, 128, 128, 128)   # standalone conv: input (N, H, W, C), 3x3 kernel, C outputs


# ---------------------------------------------------------------- the problem both frameworks fit

def problem(size: int, image_path: Path = IMAGE):
    """(z, clean, noisy): z (1, S, S, 32) ~ U(0, 0.1); clean / noisy (1, S, S, 3) float32 crops."""
    from PIL import Image

    image = np.asarray(Image.open(image_path).convert("RGB"), np.float32) / 255.0
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    clean = image[None, top:top + size, left:left + size]
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + SIGMA * rng.normal(size=clean.shape), 0, 1).astype(np.float32)
    z = rng.uniform(0, 0.1, size=(1, size, size, INPUT_CHANNELS)).astype(np.float32)
    return z, clean, noisy


def psnr(output: np.ndarray, clean: np.ndarray) -> float:
    """PSNR (dB, data range 1) of the net's output against the clean crop."""
    return float(-10 * np.log10(np.mean((np.clip(output, 0, 1) - clean) ** 2)))


def time_steps(step, warmup: int, steps: int, clean: np.ndarray) -> dict:
    """Run ``step()`` warmup + steps times and time the last ``steps`` calls.

    ``step()`` must block until the update is done and return ``(loss, output)``, the output
    (1, S, S, 3) NumPy array being the one the loss was computed on (before the update); its PSNR
    against ``clean`` is recorded for every step, outside the timed interval.
    """
    times, psnrs, loss = [], [], None
    start = time.perf_counter()
    for index in range(warmup + steps):
        if index == warmup:
            warmup_s = time.perf_counter() - start
        begin = time.perf_counter()
        loss, output = step()
        if index >= warmup:
            times.append(time.perf_counter() - begin)
        psnrs.append(psnr(output, clean))
    return {"times": times, "warmup_s": warmup_s, "final_loss": float(loss),
            **psnr_summary(psnrs)}


def psnr_summary(psnrs: list) -> dict:
    """Final and peak PSNR of a fit (the peak is what an oracle early stop would give)."""
    return {"psnr_final": psnrs[-1], "psnr_peak": max(psnrs),
            "psnr_peak_step": int(np.argmax(psnrs)) + 1}


# ---------------------------------------------------------------- workers (one per subprocess)

def tf_worker(variant: dict, size: int, warmup: int, steps: int, threads: int) -> dict:
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tfdip.nets

    if variant.get("policy"):
        keras.mixed_precision.set_global_policy(variant["policy"])
    keras.utils.set_random_seed(0)
    net = tfdip.nets.skip()
    z, clean, noisy = problem(size)
    z, noisy = tf.constant(z), tf.constant(noisy)
    adam = fused_adam_class() if variant.get("optimizer") == "fused_adam" else keras.optimizers.Adam
    optimizer = adam(learning_rate=0.01, epsilon=1e-8)
    weights = net.trainable_variables

    @tf.function(jit_compile=variant.get("jit_compile", False), autograph=False)
    def train_step():
        with tf.GradientTape() as tape:
            out = tf.cast(net(z, training=True), tf.float32)
            loss = tf.reduce_mean(tf.square(out - noisy))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss, out

    def step():
        loss, out = train_step()
        return loss.numpy(), out.numpy()

    timed = time_steps(step, warmup, steps, clean)
    return {"parameters": net.count_params(), "compute_dtype": net.compute_dtype,
            **graph_census(train_step.get_concrete_function().graph), **timed}


def graph_census(graph) -> dict:
    """What a traced step does: ``step_gflop``, the FLOPs (1e9) of its convolutions, 2 per
    multiply-add of every ``Conv2D``, ``Conv2DBackpropInput`` and ``Conv2DBackpropFilter`` op of
    ``graph`` and the functions inside it (a forward conv: 2 * |output| * kh * kw * C_in; a
    backward conv: the same with the forward output's size, its ``out_backprop`` input); and
    ``graph_ops``, the number of ops of one step (for a graph of several steps in a loop: of its
    loop body and the functions that calls, without the ops around the loop)."""
    import numpy as np

    flops, ops, graphs, seen = 0, 0, [graph], set()
    while graphs:  # the graph and the functions inside it (while-loop bodies, cond branches)
        g = graphs.pop()
        if id(g) in seen:
            continue
        seen.add(id(g))
        graphs += [f.graph for f in getattr(g, "_functions", {}).values() if hasattr(f, "graph")]
        loop = any(op.type in ("While", "StatelessWhile") for op in g.get_operations())
        for op in g.get_operations():
            ops += 0 if loop else 1
            if op.type == "Conv2D":
                output, kernel = op.outputs[0].shape, op.inputs[1].shape
            elif op.type in ("Conv2DBackpropInput", "Conv2DBackpropFilter"):
                output, kernel = op.inputs[2].shape, _backprop_kernel_shape(op)
            else:
                continue
            flops += 2 * int(np.prod(output)) * int(kernel[0]) * int(kernel[1]) * int(kernel[2])
    return {"step_gflop": flops / 1e9, "graph_ops": ops}


def _backprop_kernel_shape(op):
    """(kh, kw, C_in, C_out) of a backward conv op: its filter input (BackpropInput) or its
    output, the filter's gradient (BackpropFilter)."""
    return op.inputs[1].shape if op.type == "Conv2DBackpropInput" else op.outputs[0].shape


def standalone_conv(dtype: str):
    """``(conv, flop)``: a traced 3x3 convolution of ``PEAK_SHAPE`` (C to C channels) in
    ``dtype`` and its FLOPs."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    n, h, w, c = PEAK_SHAPE
    x = tf.constant(rng.normal(size=PEAK_SHAPE), dtype)
    kernel = tf.constant(rng.normal(size=(3, 3, c, c)) / np.sqrt(9 * c), dtype)
    return tf.function(lambda: tf.nn.conv2d(x, kernel, 1, "SAME")), 2 * n * h * w * 9 * c * c


def conv_worker(variant: dict, size: int, warmup: int, steps: int, threads: int) -> dict:
    """This machine's convolution throughput: a standalone 3x3 conv of ``PEAK_SHAPE`` in
    ``variant["dtype"]`` (oneDNN, as tfdip runs), GFLOP/s of the median call."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    conv, flop = standalone_conv(variant["dtype"])
    times = []
    for index in range(warmup + steps):
        begin = time.perf_counter()
        conv().numpy()
        if index >= warmup:
            times.append(time.perf_counter() - begin)
    return {"parameters": None, "times": times, "warmup_s": 0.0, "final_loss": 0.0,
            "psnr_final": 0.0, "psnr_peak": 0.0, "psnr_peak_step": 0, "step_gflop": flop / 1e9,
            "compute_dtype": dtype.name}


def fused_adam_class():
    """``keras.optimizers.Adam`` whose per-variable update is TF's fused ``ResourceApplyAdam``:
    ``var -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``, as Keras' own Adam."""
    import keras
    import tensorflow as tf

    class FusedAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            index = self._get_variable_index(variable)
            dtype = variable.dtype
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=self._momentums[index].handle,
                v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
                beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
                beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
                grad=tf.cast(gradient, dtype))

    return FusedAdam


def tf_dip_worker(variant: dict, size: int, warmup: int, steps: int, threads: int) -> dict:
    """``DeepImagePrior.fit`` for warmup + steps iterations; step times from batch-end callbacks."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tfdip.nets
    from tfdip.dip import DeepImagePrior
    from tfdip.physics import make_physics

    keras.utils.set_random_seed(0)
    spec = tfdip.nets.spec_for("skip")
    _, clean, noisy = problem(size)
    model = DeepImagePrior(spec.build(), make_physics("denoising", sigma=SIGMA), noisy[0],
                           size_multiple=spec.size_multiple, input_noise_std=1 / 30,
                           reference=clean[0], seed=0)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01, epsilon=1e-8))
    ends, losses, psnrs = [], [], []

    class BatchEnds(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())
            losses.append(float(logs["loss"]))
            psnrs.append(float(logs["psnr"]))

    start = time.perf_counter()
    model.fit(warmup + steps, log_every=warmup + steps, callbacks=[BatchEnds()])
    return {"parameters": model.generator.count_params(), "times": list(np.diff(ends[warmup - 1:])),
            "warmup_s": ends[warmup - 1] - start, "final_loss": losses[-1],
            **psnr_summary(psnrs)}


def tf_user_worker(variant: dict, size: int, warmup: int, steps: int, threads: int) -> dict:
    """The user's whole step (``make_dip`` with the method's recipe) at this size; ``steps``
    timed steps in ``DeepImagePrior.fit`` calls of ``CHUNK`` steps, after ``warmup`` steps."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    with ablation(variant.get("ablation")) as callbacks:
        return _user_run(variant, size, warmup, steps, callbacks)


def _user_run(variant, size, warmup, steps, callbacks) -> dict:
    """:func:`tf_user_worker`'s run, with the ablation's patches in force."""
    from tfdip.metrics import psnr as tfdip_psnr
    from tfdip.physics import Denoising
    from tfdip.recipes import make_recipe
    from tfdip.restoration import make_dip

    chunks = max(1, steps // CHUNK)
    _, clean, noisy = problem(size)
    bayesian = {} if variant["method"] == "sgd" else {"burn_in": 0, "thin": 1}
    recipe = make_recipe(variant["method"], "denoising", iterations=warmup + chunks * CHUNK,
                         sigma=SIGMA, **bayesian)
    dip = make_dip(noisy[0], Denoising(SIGMA), recipe, reference=clean[0], seed=0,
                   precision=variant.get("precision", "float32"),
                   jit_compile=variant.get("jit_compile", False), check_resources=False)
    start = time.perf_counter()
    dip.fit(warmup, log_every=warmup, callbacks=callbacks)
    warmup_s = time.perf_counter() - start
    times, psnrs = [], []
    for _ in range(chunks):
        begin = time.perf_counter()
        logs = dip.fit(CHUNK, log_every=CHUNK, callbacks=callbacks).history
        times += [(time.perf_counter() - begin) / CHUNK] * CHUNK
        psnrs.append(tfdip_psnr(dip.restored("ema" if variant["method"] == "sgd" else "mean"),
                                clean[0]))
    return {"parameters": dip.generator.count_params(), "times": times, "warmup_s": warmup_s,
            "final_loss": float(logs["loss"][-1]), "compute_dtype": dip.generator.compute_dtype,
            **graph_census(dip._train_function.get_concrete_function().graph),
            **psnr_summary(psnrs)}


@contextlib.contextmanager
def ablation(name):
    """tfdip patched for one ablation of the user step (see the module docstring) while the
    block runs (a step traced inside keeps it); yields the callbacks the ablation's fits take."""
    import keras
    import tensorflow as tf

    from tfdip import dip as dip_module
    from tfdip.inference import optimizers

    noisy = optimizers._NoisyOptimizer

    def per_variable(self, variable):
        counter = (tf.cast(self.iterations, tf.int64) * len(self._trainable_variables)
                   + self._get_variable_index(variable))
        key = tf.stack([tf.convert_to_tensor(self._noise_seed), counter])
        return tf.random.stateless_normal(tf.shape(variable), seed=key, dtype=variable.dtype)

    class EveryBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    patches = {
        None: [], "each_step": [],
        "no_noise": [(noisy, "standard_normal", lambda self, v: tf.zeros_like(v))],
        "per_variable_noise": [(noisy, "standard_normal", per_variable)],
        "native_noise": [(optimizers, "standard_normal",
                          lambda shape, key, dtype: tf.random.stateless_normal(
                              shape, seed=key, dtype=dtype, alg="philox"))],
        "tf_update": [(noisy, "_backend_update_step", noisy._update_variables)],
        "no_guard": [(dip_module, "_copy", lambda sources, targets: tf.no_op())],
    }
    if name not in patches:
        raise SystemExit(f"unknown ablation {name}")
    with contextlib.ExitStack() as stack:
        for target, attribute, value in patches[name]:
            stack.enter_context(mock.patch.object(target, attribute, value))
        yield [EveryBatch()] if name == "each_step" else []


def plain_step(net, z, noisy):
    """The plain step (forward, MSE, backward, Keras Adam) of ``net`` as a Python function."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(learning_rate=0.01, epsilon=1e-8)
    z, noisy, weights = tf.constant(z), tf.constant(noisy), net.trainable_variables

    def step():
        with tf.GradientTape() as tape:
            out = tf.cast(net(z, training=True), tf.float32)
            loss = tf.reduce_mean(tf.square(out - noisy))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    return step


def interleaved_worker(names: list, size: int, warmup: int, steps: int, threads: int) -> list:
    """Every variant of ``names`` (plain ``tf``, user steps, standalone convs) built and traced in this one
    process, then timed in turns: after one untimed turn, ``steps // CHUNK`` rounds, each running
    ``CHUNK`` steps of every variant in a rotating order, so that a change of machine load hits
    all alike."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tfdip.nets
    from tfdip.physics import Denoising
    from tfdip.precision import precision_policy
    from tfdip.recipes import make_recipe
    from tfdip.restoration import make_dip

    z, clean, noisy = problem(size)
    rounds = max(1, steps // CHUNK)
    runners, census = {}, {}
    for name in names:
        variant = VARIANTS[name]
        if variant["framework"] == "tf":
            keras.utils.set_random_seed(0)
            with precision_policy("bfloat16" if variant.get("policy") else "float32"):
                net = tfdip.nets.skip()
            step = tf.function(plain_step(net, z, noisy),
                               jit_compile=variant.get("jit_compile", False), autograph=False)
            for _ in range(warmup):
                step().numpy()
            runners[name] = lambda step=step: [step() for _ in range(CHUNK)][-1].numpy()
            census[name] = {"compute_dtype": net.compute_dtype,
                            **graph_census(step.get_concrete_function().graph)}
            continue
        if variant["framework"] == "conv":
            conv, flop = standalone_conv(variant["dtype"])
            runners[name] = lambda conv=conv: [conv() for _ in range(CHUNK)][-1].numpy()
            census[name] = {"compute_dtype": variant["dtype"], "step_gflop": flop / 1e9}
            continue
        with ablation(variant.get("ablation")) as callbacks:
            bayesian = {} if variant["method"] == "sgd" else {"burn_in": 0, "thin": 1}
            recipe = make_recipe(variant["method"], "denoising",
                                 iterations=warmup + rounds * CHUNK, sigma=SIGMA, **bayesian)
            dip = make_dip(noisy[0], Denoising(SIGMA), recipe, reference=clean[0], seed=0,
                           precision=variant.get("precision", "float32"),
                           jit_compile=variant.get("jit_compile", False),
                           check_resources=False)
            dip.fit(warmup, log_every=warmup, callbacks=callbacks)   # traces under the patch
        runners[name] = lambda dip=dip, callbacks=callbacks: dip.fit(
            CHUNK, log_every=CHUNK, callbacks=callbacks)
        census[name] = {"compute_dtype": dip.generator.compute_dtype,
                        **graph_census(dip._train_function.get_concrete_function().graph)}
    for name in names:   # one untimed turn: the first calls after building every model are slow
        runners[name]()
    times = {name: [] for name in names}
    for index in range(rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            begin = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - begin) / CHUNK)
    return [{"variant": name, "parameters": DEFAULT_PARAMETERS, "times": times[name],
             "warmup_s": 0.0, "final_loss": 0.0, "psnr_final": 0.0, "psnr_peak": 0.0,
             "psnr_peak_step": 0, **census[name]} for name in names]


def torch_worker(variant: dict, size: int, warmup: int, steps: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(HERE))
    from torch_skip import parameter_count, torch_skip

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch_skip().train()
    z, clean, noisy = problem(size)
    z, noisy = (torch.from_numpy(a.transpose(0, 3, 1, 2).copy()) for a in (z, noisy))
    if variant.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
        z, noisy = (t.contiguous(memory_format=torch.channels_last) for t in (z, noisy))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        out = net(z)
        loss = F.mse_loss(out, noisy)
        loss.backward()
        optimizer.step()
        return loss.item(), out.detach().permute(0, 2, 3, 1).numpy()

    return {"parameters": parameter_count(net), **time_steps(train_step, warmup, steps, clean)}


WORKERS = {"tf": tf_worker, "tf_dip": tf_dip_worker, "tf_user": tf_user_worker,
           "conv": conv_worker, "torch": torch_worker}


def run_worker(args) -> None:
    if args.worker == "interleaved":
        results = interleaved_worker(args.variants, args.size, args.warmup, args.steps[0],
                                     args.threads)
        print(json.dumps(results))
        return
    variant = VARIANTS[args.worker]
    result = WORKERS[variant["framework"]](variant, args.size, args.warmup, args.steps[0],
                                           args.threads)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# ---------------------------------------------------------------- the driver

def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "logical_cpus": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                           if line.startswith("model name"))
        flags = next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split()
        info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2")))
    except (OSError, StopIteration):
        pass
    try:  # the scheduling group's priority (Linux autogroups), if the run was shielded
        info["autogroup"] = Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        pass
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gb"] = round(int(meminfo[1]) / 2 ** 20, 1)
    except (OSError, IndexError, ValueError):
        pass
    versions = subprocess.run(
        [sys.executable, "-c", "import json, numpy, tensorflow, keras\n"
         "try:\n    import torch; torch_version = torch.__version__\n"
         "except ImportError:\n    torch_version = 'not installed'\n"
         "print(json.dumps({'numpy': numpy.__version__, 'tensorflow': tensorflow.__version__, "
         "'keras': keras.__version__, 'torch': torch_version}))"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    info.update(json.loads(versions.stdout.strip().splitlines()[-1]))
    return info


def measure(name: str, size: int, steps: int, args) -> dict:
    variant = VARIANTS[name]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **variant.get("env", {})}
    command = [sys.executable, __file__, "--worker", name, "--size", str(size), "--steps",
               str(steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    record = {"variant": name, "size": size, "load_before": os.getloadavg()[0]}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        record["error"] = f"timed out after {args.timeout} s"
        print(f"  {name:20s} {size:4d}px  {record['error']}", flush=True)
        return record
    if done.returncode != 0:
        record["error"] = (done.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  {name:20s} {size:4d}px  failed: {record['error']}", flush=True)
        return record
    result = json.loads(done.stdout.strip().splitlines()[-1])
    times_ms = 1e3 * np.asarray(result.pop("times"))
    record.update(result, steps=len(times_ms), median_ms=float(np.median(times_ms)),
                  q1_ms=float(np.percentile(times_ms, 25)), q3_ms=float(np.percentile(times_ms, 75)),
                  min_ms=float(times_ms.min()), times_ms=[round(t, 2) for t in times_ms])
    if record["parameters"] not in (DEFAULT_PARAMETERS, None):
        record["error"] = f"expected {DEFAULT_PARAMETERS} parameters, got {record['parameters']}"
    print(f"  {name:20s} {size:4d}px  median {record['median_ms']:8.1f} ms "
          f"(IQR {record['q1_ms']:.1f}-{record['q3_ms']:.1f}, load {record['load_before']:.2f})",
          flush=True)
    return record


def measure_interleaved(size: int, steps: int, args) -> list:
    """All ``args.variants`` at ``size`` in one worker process, timed in turns (see
    :func:`interleaved_worker`); one record per variant, as :func:`measure` makes them."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, "--worker", "interleaved", "--size", str(size),
               "--steps", str(steps), "--warmup", str(args.warmup), "--threads",
               str(args.threads), "--variants", *args.variants]
    load = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  interleaved {size}px failed: {error}", flush=True)
        return [{"variant": name, "size": size, "error": error} for name in args.variants]
    records = []
    for result in json.loads(done.stdout.strip().splitlines()[-1]):
        times_ms = 1e3 * np.asarray(result.pop("times"))
        record = {**result, "size": size, "load_before": load, "load_after": os.getloadavg()[0],
                  "steps": len(times_ms) * CHUNK, "median_ms": float(np.median(times_ms)),
                  "q1_ms": float(np.percentile(times_ms, 25)),
                  "q3_ms": float(np.percentile(times_ms, 75)), "min_ms": float(times_ms.min()),
                  "times_ms": [round(t, 2) for t in times_ms]}
        records.append(record)
        print(f"  {record['variant']:30s} {size:4d}px  median {record['median_ms']:8.1f} ms "
              f"(IQR {record['q1_ms']:.1f}-{record['q3_ms']:.1f})", flush=True)
    return records


def least_disturbed(rounds: list) -> dict:
    """Of one (variant, size)'s rounds, the one with the smallest median (other processes on a
    shared machine only ever slow a run down), with every round's median beside it."""
    good = [r for r in rounds if "error" not in r] or rounds
    best = min(good, key=lambda r: r.get("median_ms", np.inf))
    return {**best, "round_medians_ms": [round(r["median_ms"], 1) for r in good
                                         if "median_ms" in r]}


def markdown(report: dict) -> str:
    results = {(r["variant"], r["size"]): r for r in report["results"]}
    sizes = report["config"]["sizes"]

    def cell(name, size):
        r = results.get((name, size))
        if r is None:
            return "-"
        if "error" in r:
            return "failed"
        return f"{r['median_ms']:.0f}"

    m = report["machine"]
    lines = [
        "# Training-step speed: tfdip against PyTorch",
        "",
        f"Default DIP skip net ({DEFAULT_PARAMETERS:,} parameters), one step = forward + MSE + "
        "backward + Adam update, batch 1, input depth 32. Median ms per step over "
        f"{', '.join(str(s) for s in report['config']['steps'])} timed steps "
        f"(sizes {', '.join(str(s) for s in sizes)}) after {report['config']['warmup']} warm-up "
        f"steps; {report['config']['threads']} threads; "
        + ("all variants of a size built in one process and timed in turns of "
           f"{CHUNK} steps (rotating order); " if report["config"].get("interleaved") else
           "each run in its own process; ") +
        f"{report['config']['rounds']} round(s) of all variants, the round with the "
        "smallest median reported.",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('logical_cpus')} logical CPUs, "
        f"{m.get('memory_gb', '?')} GB; {m.get('platform')}; Python {m.get('python')}, "
        f"TensorFlow {m.get('tensorflow')}, Keras {m.get('keras')}, PyTorch {m.get('torch')}, "
        f"NumPy {m.get('numpy')}. Measured {report['date']}; load average "
        f"{report['load_before']:.2f} before, {report['load_after']:.2f} after; scheduling group "
        f"`{m.get('autogroup', 'unknown')}`.",
        "",
        "| size | tfdip (ms) | PyTorch (ms) | PyTorch / tfdip |",
        "|---|---|---|---|",
    ]
    for size in sizes:
        tf_r, torch_r = results.get(("tfdip", size)), results.get(("torch", size))
        ratio = ("-" if not tf_r or not torch_r or "error" in tf_r or "error" in torch_r
                 else f"{torch_r['median_ms'] / tf_r['median_ms']:.2f}")
        lines.append(f"| {size} | {cell('tfdip', size)} | {cell('torch', size)} | {ratio} |")
    names = [n for n in VARIANTS if any((n, s) in results for s in sizes)]
    lines += ["", "All variants (median ms per step):", "",
              "| variant | " + " | ".join(f"{s} px" for s in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(name, s) for s in sizes) + " |")
    lines += user_step_tables(report, results, sizes)
    if report.get("quality"):
        _, clean, noisy = problem(report["config"]["quality_size"])
        noisy_psnr = psnr(noisy, clean)
        lines += ["", f"Numerical check: the same denoising fit run for "
                  f"{report['config']['quality_steps']} steps at "
                  f"{report['config']['quality_size']} px (noisy observation {noisy_psnr:.2f} dB); "
                  "PSNR (dB) of the output against the clean crop, at its peak (the oracle "
                  "early stop) and at the end (over-fitted noise). Initial weights and summation "
                  "orders differ between runs; a numerically broken variant shows as a large gap. "
                  "``tfdip_dip`` adds input jitter and a roll-back guard, so it fits more slowly.",
                  "", "| variant | peak PSNR (step) | final PSNR | final loss | median ms |",
                  "|---|---|---|---|---|"]
        for r in report["quality"]:
            lines.append(f"| {r['variant']} | " + ("failed | | | |" if "error" in r else
                         f"{r['psnr_peak']:.2f} ({r['psnr_peak_step']}) | {r['psnr_final']:.2f} | "
                         f"{r['final_loss']:.5f} | {r['median_ms']:.0f} |"))
    errors = [r for r in report["results"] + report.get("quality", []) if "error" in r]
    if errors:
        lines += ["", "Failures:"] + [f"- {r['variant']} at {r['size']} px: {r['error']}"
                                      for r in errors]
    return "\n".join(lines) + "\n"


def user_step_tables(report: dict, results: dict, sizes: list) -> list:
    """Markdown: the user's steps beside the plain step, and every step's share of the peak."""
    def ok(name, size):
        r = results.get((name, size))
        return r if r is not None and "error" not in r else None

    users = [n for n in VARIANTS if n.startswith("user_") and any(ok(n, s) for s in sizes)]
    lines = []
    if users:
        lines += ["", "The step a user runs (median ms per step; in brackets: its ratio to the "
                  "plain step ``tfdip`` of the same run; ops: TensorFlow ops in one traced step, "
                  "an XLA computation counted by the ops it compiles):", "",
                  "| step | " + " | ".join(f"{s} px" for s in sizes) + " | ops |",
                  "|---|" + "---|" * (len(sizes) + 1)]
        for name in ["tfdip"] + users:
            cells = []
            for size in sizes:
                r, plain = ok(name, size), ok("tfdip", size)
                cells.append("-" if r is None else f"{r['median_ms']:.0f}" + (
                    f" ({r['median_ms'] / plain['median_ms']:.2f}x)" if plain else ""))
            counts = [ok(name, s).get("graph_ops") for s in sizes if ok(name, s)]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {(counts or ['-'])[0]} |")
    ablations = [n for n in users if VARIANTS[n].get("ablation")]
    if ablations:
        lines += ["", "Ablations: ms per step of the variant minus that of the full step of its "
                  "method (``user_psgld`` / ``user_sgd``) in the same run: positive for a part "
                  "removed (what that part costs), negative for an older or alternative design "
                  "(what the current one saves):", "",
                  "| ablation | " + " | ".join(f"{s} px" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for name in ablations:
            full = f"user_{VARIANTS[name]['method']}"
            cells = [f"{ok(full, s)['median_ms'] - ok(name, s)['median_ms']:+.1f}"
                     if ok(full, s) and ok(name, s) else "-" for s in sizes]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    peaks = {dtype: ok(f"conv_peak_{dtype}", size) for dtype in ("float32", "bfloat16")
             for size in sizes if ok(f"conv_peak_{dtype}", size)}
    if not peaks:
        return lines
    peak_gflops = {dtype: r["step_gflop"] / (r["median_ms"] / 1e3) for dtype, r in peaks.items()}
    lines += ["", "Convolution peak of this machine (a standalone 3x3 conv, "
              f"{'x'.join(str(d) for d in PEAK_SHAPE)} input, 128 outputs): "
              + ", ".join(f"{dtype} {value:.0f} GFLOP/s" for dtype, value in peak_gflops.items())
              + ". Work of a step: the FLOPs of its convolutions (forward and backward, counted "
              "from the traced step); achieved GFLOP/s and fraction of the peak of the step's "
              "compute precision:", "",
              "| step | " + " | ".join(f"{s} px: GFLOP, GFLOP/s, of peak" for s in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for name in [n for n in VARIANTS if not n.startswith("conv_peak")]:
        cells = []
        for size in sizes:
            r = ok(name, size)
            peak = None if r is None else peak_gflops.get(r.get("compute_dtype"))
            if r is None or not r.get("step_gflop"):
                cells.append("-")
                continue
            achieved = r["step_gflop"] / (r["median_ms"] / 1e3)
            cells.append(f"{r['step_gflop']:.1f}, {achieved:.0f}"
                         + ("" if peak is None else f", {achieved / peak:.0%}"))
        if any(c != "-" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def run_driver(args) -> None:
    if len(args.steps) not in (1, len(args.sizes)):
        raise SystemExit("--steps takes one count or one per size")
    steps = args.steps * len(args.sizes) if len(args.steps) == 1 else args.steps
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg()[0],
              "machine": machine(),
              "config": {"sizes": args.sizes, "steps": steps, "warmup": args.warmup,
                         "threads": args.threads, "rounds": args.rounds,
                         "variants": args.variants, "interleaved": args.interleaved},
              "results": []}
    print(f"load average {report['load_before']:.2f}", flush=True)
    runs = []
    for round_index in range(args.rounds):
        for size, count in zip(args.sizes, steps):
            if args.interleaved:
                runs += [{**r, "round": round_index}
                         for r in measure_interleaved(size, count, args)]
                continue
            for name in args.variants:
                runs.append({**measure(name, size, count, args), "round": round_index})
    report["results"] = [least_disturbed([r for r in runs if (r["variant"], r["size"]) == key])
                         for key in dict.fromkeys((r["variant"], r["size"]) for r in runs)]
    if args.quality_steps:
        print(f"quality: {args.quality_steps} steps at {args.quality_size} px", flush=True)
        report["config"].update(quality_steps=args.quality_steps, quality_size=args.quality_size)
        report["quality"] = [measure(name, args.quality_size, args.quality_steps, args)
                             for name in args.quality_variants]
    report["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 20, 10],
                        help="timed steps, one count or one per size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1200,
                        help="seconds before one (variant, size) run is abandoned")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the sweep; each (variant, size) reports its least disturbed "
                             "round (smallest median)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--quality-steps", type=int, default=400,
                        help="also fit this many steps per quality variant and report the PSNR "
                             "against the clean crop (0: skip)")
    parser.add_argument("--quality-size", type=int, default=64)
    parser.add_argument("--quality-variants", nargs="+", choices=list(VARIANTS),
                        default=["tfdip", "tfdip_xla", "tfdip_bf16", "tfdip_no_onednn",
                                 "tfdip_fused_adam", "tfdip_dip", "torch"])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="speed", help="results file stem: OUT/NAME.json, .md")
    parser.add_argument("--interleaved", action="store_true",
                        help="run all tfdip variants of a size in one process, timed in turns "
                             "of CHUNK steps (robust to a changing machine load; plain ``tf`` "
                             "and ``user_`` variants only)")
    parser.add_argument("--worker", choices=list(VARIANTS) + ["interleaved"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
    else:
        run_driver(args)


if __name__ == "__main__":
    main()
