"""Keras 3 layers the DIP generators are built from, and the small functional blocks that use them.

All layers take NHWC tensors with unknown height and width (inputs of shape
``(None, None, None, C)``), keep the input dtype (float32, float64 or a mixed-precision compute
dtype) and serialise through ``get_config`` under the ``tfdip`` package name.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfdip.nets import init as initializers

PACKAGE = "tfdip"


@keras.saving.register_keras_serializable(package=PACKAGE)
def erf(x):
    """The error-function activation ``erf(x)``, whose infinite-width covariance is the arcsine kernel."""
    return tf.math.erf(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReflectionPad2D(keras.layers.Layer):
    """Mirror padding of ``pad`` pixels on each side of H and W (PyTorch ``nn.ReflectionPad2d``).

    ``(N, H, W, C) -> (N, H + 2 pad, W + 2 pad, C)``; the edge pixel is not repeated, so
    ``x[-1] = x[1]``. H and W must exceed ``pad``.
    """

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        p = self.pad
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        grow = lambda size: None if size is None else size + 2 * self.pad
        return (n, grow(h), grow(w), c)

    def covariance_map(self, field):
        """Infinite-width covariance (:mod:`tfdip.kernels.network`): unchanged, borders are ignored."""
        return field

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Resize2D(keras.layers.Layer):
    """Up-sampling of H and W by an integer ``factor`` with ``tf.image.resize``.

    ``(N, H, W, C) -> (N, factor H, factor W, C)``. ``method="bilinear"`` samples at half-pixel
    centres, i.e. source coordinate ``(i + 0.5) / factor - 0.5`` clamped to the image (PyTorch
    ``align_corners=False``); ``"nearest"`` repeats every pixel ``factor`` times along H and W.
    """

    def __init__(self, factor: int = 2, method: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.method = method

    def call(self, x):
        size = tf.shape(x)[1:3] * self.factor
        # tf.image.resize returns float32 for bilinear whatever the input; keep the input dtype.
        return tf.cast(tf.image.resize(x, size, method=self.method), x.dtype)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        grow = lambda size: None if size is None else size * self.factor
        return (n, grow(h), grow(w), c)

    def covariance_map(self, field):
        """Infinite-width covariance (:mod:`tfdip.kernels.network`): up-sampling, phase-averaged."""
        return field.upsample(self.factor, self.method)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "method": self.method}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageBatchNorm(keras.layers.Layer):
    """Batch normalisation that always uses the statistics of the tensor it is given.

    Per channel c, with mean ``m_c`` and biased variance ``v_c`` taken over N, H and W:
    ``y = gamma_c (x - m_c) / sqrt(v_c + epsilon) + beta_c``. This holds in training and in
    inference calls alike (the DIP reference runs PyTorch BatchNorm in training mode on one
    image); there are no moving statistics, so the only weights are ``gamma`` and ``beta``,
    of shape ``(C,)``. Statistics are computed in at least float32 (also under a mixed-precision
    policy, where gamma and beta stay float32).
    """

    def __init__(self, epsilon: float = 1e-3, gamma_initializer="ones", beta_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.beta_initializer = keras.initializers.get(beta_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        # autocast=False: under mixed precision the statistics stay in float32.
        self.gamma = self.add_weight(shape=(channels,), initializer=self.gamma_initializer,
                                     autocast=False, name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer=self.beta_initializer,
                                    autocast=False, name="beta")

    def call(self, x):
        if x.dtype == tf.float64:  # the fused kernel has no float64 version
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            scale = tf.cast(self.gamma, x.dtype) * tf.math.rsqrt(variance + self.epsilon)
            return x * scale + (tf.cast(self.beta, x.dtype) - mean * scale)
        # One fused kernel (and one for its gradient): about twice as fast on CPU as moments plus
        # element-wise ops. In training mode it normalises with the biased batch variance;
        # statistics are accumulated in float32 whatever the input dtype.
        no_statistics = tf.zeros([0], tf.float32)
        return tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=no_statistics, variance=no_statistics, epsilon=self.epsilon, is_training=True,
            data_format="NHWC").y

    def compute_output_shape(self, input_shape):
        return input_shape

    def covariance_map(self, field):
        """Infinite-width covariance (:mod:`tfdip.kernels.network`): per-image BatchNorm."""
        return field.batch_norm(self.epsilon, self.gamma_initializer, self.beta_initializer)

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
            "beta_initializer": keras.initializers.serialize(self.beta_initializer),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class CenterCropConcat(keras.layers.Layer):
    """Concatenation on channels after centre-cropping every input to the smallest H and W.

    Inputs ``(N, H_i, W_i, C_i)`` give ``(N, min H_i, min W_i, sum C_i)``; input i is cropped
    from row ``(H_i - min H) // 2`` and column ``(W_i - min W) // 2`` (as the DIP ``Concat``).
    Inputs whose static H and W already agree are concatenated without cropping.
    """

    def call(self, inputs):
        inputs = list(inputs)
        static_sizes = {tuple(x.shape[1:3]) for x in inputs}
        if len(static_sizes) == 1 and None not in next(iter(static_sizes)):
            return tf.concat(inputs, axis=-1)
        sizes = tf.stack([tf.shape(x)[1:3] for x in inputs])
        target = tf.reduce_min(sizes, axis=0)
        cropped = []
        for x in inputs:
            start = (tf.shape(x)[1:3] - target) // 2
            cropped.append(x[:, start[0]:start[0] + target[0], start[1]:start[1] + target[1], :])
        return tf.concat(cropped, axis=-1)

    def compute_output_shape(self, input_shapes):
        def smallest(sizes):
            return None if None in sizes else min(sizes)

        return (input_shapes[0][0], smallest([s[1] for s in input_shapes]),
                smallest([s[2] for s in input_shapes]), sum(s[3] for s in input_shapes))

    def covariance_map(self, fields):
        """Infinite-width covariance (:mod:`tfdip.kernels.network`): the channel groups side by
        side (cropping changes no stationary covariance)."""
        return fields[0].concatenate(fields[1:])


def activation_layer(spec, name: str) -> keras.layers.Layer:
    """The spec's non-linearity: LeakyReLU(``negative_slope``), ReLU or erf."""
    if spec.activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=spec.negative_slope, name=name)
    if spec.activation == "relu":
        return keras.layers.ReLU(name=name)
    return keras.layers.Activation(erf, name=name)


def padded_conv(x, spec, filters: int, kernel_size: int, name: str, strides: int = 1,
                dtype=None):
    """Pad by ``(kernel_size - 1) // 2`` (``spec.pad``: reflection or zero), then a VALID conv.

    ``(N, H, W, C_in) -> (N, ceil(H / strides), ceil(W / strides), filters)`` for odd kernels.
    Weights are initialised per ``spec.init`` with fan-in ``C_in * kernel_size ** 2``.
    ``dtype`` is the conv's dtype policy (None: the global one).
    """
    pad = (kernel_size - 1) // 2
    if pad > 0:
        if spec.pad == "reflection":
            x = ReflectionPad2D(pad, name=f"{name}_pad")(x)
        else:
            x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    fan_in = x.shape[-1] * kernel_size * kernel_size
    kernel_init, bias_init = initializers.conv_initializers(spec, fan_in)
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="valid", use_bias=spec.need_bias,
        kernel_initializer=kernel_init, bias_initializer=bias_init, name=name, dtype=dtype,
    )(x)


def output_head(x, spec):
    """conv 1x1 (-> ``spec.output_channels``), then a sigmoid if ``spec.need_sigmoid``.

    The head runs in the policy's variable dtype, so that under a mixed-precision policy
    (e.g. ``mixed_bfloat16``) the image leaves the net in float32; otherwise it changes nothing.
    """
    dtype = keras.config.dtype_policy().variable_dtype
    x = padded_conv(x, spec, spec.output_channels, 1, name="output_conv", dtype=dtype)
    if spec.need_sigmoid:
        x = keras.layers.Activation("sigmoid", name="output_sigmoid", dtype=dtype)(x)
    return x


def batch_norm(x, spec, name: str):
    """:class:`ImageBatchNorm` with the gamma initialiser and epsilon that ``spec.init`` implies."""
    return ImageBatchNorm(epsilon=initializers.bn_epsilon(spec),
                          gamma_initializer=initializers.bn_gamma_initializer(spec), name=name)(x)
