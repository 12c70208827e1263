"""Stationary kernels on a pixel grid as FFT linear operators.

On the ``H x W`` pixel grid (row-major vectors of ``N = H W`` values) a stationary kernel
``k(x, x') = k(x' - x)`` has a block-Toeplitz covariance ``K[i, j] = k(p_j - p_i)``: ``K v`` is the
linear (zero-padded) 2-D convolution of the image ``v`` with the table ``k(d)``,
``d in [-(H-1), H-1] x [-(W-1), W-1]``, cut back to the grid. It costs ``O(L1 L2 log(L1 L2))`` with
real FFTs on an ``L1 x L2`` grid instead of ``O(N^2)``.

FFT size (the truncation rule). The table is cut to ``|d_row| <= R1``, ``|d_col| <= R2`` where the
kernel has decayed: ``R1`` is the smallest radius with ``sum_{|d_row| > R1} sum_{d_col} |k(d)| <=
truncation * k(0) / 2`` (``R2`` likewise over columns), so that every product ``K v`` moves by at
most ``truncation * k(0) * max|v|`` per pixel. A circular convolution of length ``L >= H + R1`` then
equals the linear one on the grid (offsets ``-R1 .. H - 1 + R1`` never wrap onto a pixel), so
``L1`` is the smallest 2,3,5,7-smooth size ``>= H + R1`` (at most ``2H - 1`` rounded up), and the
same for ``L2``. A kernel that never decays (the DIP kernel's constant part) keeps ``R = H - 1``.

Classes:

- :class:`GridKernel`: ``K`` on the open grid, or with ``periodic=True`` the circulant covariance of
  the ``H x W`` torus (offsets wrapped to the nearest image, spectrum clamped at 0); a
  ``tf.linalg.LinearOperator`` (self-adjoint, ``[N, N]``).
- :class:`ObservedGridKernel`: ``P K P^T + s^2 I`` for the known pixels (``P``: ``[n, N]``, the rows
  of the identity at the known pixels), the covariance of the observations.

Both also offer :meth:`apply` on row vectors ``[..., M, n]``, the layout the solvers use.
Kernels are checked to be stationary (:func:`check_stationary`) and tabulated in float32 or float64.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfdip.errors import TfdipError
from tfdip.kernels.lattice import window_grid

tfpk = tfp.math.psd_kernels

TRUNCATION = 1e-12
"""Default truncation tolerance of the kernel table, relative to ``k(0)`` (see the module docstring)."""
STATIONARITY_TOLERANCE = 1e-8
"""Relative tolerance of :func:`check_stationary`."""


def fast_fft_size(minimum: int) -> int:
    """The smallest integer ``>= minimum`` whose prime factors are 2, 3, 5 or 7."""
    size = max(int(minimum), 1)
    while True:
        rest = size
        for prime in (2, 3, 5, 7):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def check_stationary(kernel, height: int, width: int, dtype=tf.float64, seed: int = 0) -> None:
    """Refuse a kernel that is not stationary on the grid: ``k(a, a + d)`` must equal ``k(0, d)``.

    Compares both at 64 random pixel pairs ``(a, a + d)`` of the grid (fixed ``seed``), to a
    relative :data:`STATIONARITY_TOLERANCE` of ``max |k(0, d)|``.

    Raises:
      TfdipError: for a kernel that depends on position (e.g. ``Linear`` or ``Polynomial``).
    """
    rng = np.random.default_rng(seed)
    starts = np.stack([rng.integers(0, height, 64), rng.integers(0, width, 64)], -1)
    ends = np.stack([rng.integers(0, height, 64), rng.integers(0, width, 64)], -1)
    starts, ends = (tf.constant(p, dtype) for p in (starts, ends))
    moved = kernel.apply(starts, ends).numpy()
    at_origin = kernel.apply(tf.zeros_like(starts), ends - starts).numpy()
    scale = max(float(np.max(np.abs(at_origin))), np.finfo(np.float64).tiny)
    if not np.all(np.abs(moved - at_origin) <= STATIONARITY_TOLERANCE * scale + 1e-300):
        raise TfdipError(f"the {kernel.name} kernel is not stationary (k(x, x + d) depends on x); "
                         f"the grid solver needs a stationary kernel: use --solver dense on an "
                         f"image of at most 64x64 pixels")


def evaluation_dtype(kernel, dtype):
    """The dtype to evaluate ``kernel`` in: its parameters' dtype, or ``dtype`` for a kernel without one."""
    return tf.as_dtype(kernel.dtype) if kernel.dtype is not None else tf.as_dtype(dtype)


def kernel_table(kernel, rows: int, columns: int, dtype=tf.float64) -> tf.Tensor:
    """``k(d)`` at the offsets ``d in [-rows, rows] x [-columns, columns]``, shape ``[2 rows + 1, 2 columns + 1]``.

    Evaluated in the kernel's own dtype and cast to ``dtype``; differentiable in its parameters.
    """
    inner = evaluation_dtype(kernel, dtype)
    offsets = window_grid([-rows, -columns], [rows, columns], inner)
    origin = tf.zeros([1, 1, 2], inner)
    return tf.cast(kernel.apply(origin, offsets, example_ndims=2), dtype)


def truncation_radii(table: np.ndarray, truncation: float) -> Tuple[int, int]:
    """``(R1, R2)`` of the module docstring for a centred table ``[2 H - 1, 2 W - 1]``."""
    magnitude = np.abs(np.asarray(table, np.float64))
    centre = (magnitude.shape[0] // 2, magnitude.shape[1] // 2)
    budget = truncation * magnitude[centre] / 2.0
    radii = []
    for axis in (0, 1):
        marginal = magnitude.sum(axis=1 - axis)
        half = marginal.shape[0] // 2
        # Mass outside radius r: sum over |d| > r of the marginal, for r = 0 .. half.
        folded = marginal[half:].copy()
        folded[1:] += marginal[:half][::-1]
        outside = np.concatenate([np.cumsum(folded[::-1])[::-1][1:], [0.0]])
        radii.append(int(np.argmax(outside <= budget)))
    return radii[0], radii[1]


def circulant_table(table, radii: Tuple[int, int], fft_shape: Tuple[int, int]) -> tf.Tensor:
    """The centred table cut to ``|d| <= radii`` and laid out circularly on ``fft_shape`` (``d`` at ``d mod L``)."""
    half = (table.shape[0] // 2, table.shape[1] // 2)
    cut = table[half[0] - radii[0]: half[0] + radii[0] + 1, half[1] - radii[1]: half[1] + radii[1] + 1]
    padded = tf.pad(cut, [[0, fft_shape[0] - cut.shape[0]], [0, fft_shape[1] - cut.shape[1]]])
    return tf.roll(padded, shift=[-radii[0], -radii[1]], axis=[0, 1])


def torus_table(kernel, height: int, width: int, dtype=tf.float64) -> tf.Tensor:
    """``k`` at the offsets of the ``H x W`` torus, each wrapped to its nearest image ``|d| <= H/2``, laid out circularly."""
    rows = (np.arange(height) + height // 2) % height - height // 2
    columns = (np.arange(width) + width // 2) % width - width // 2
    inner = evaluation_dtype(kernel, dtype)
    offsets = tf.constant(np.stack(np.meshgrid(rows, columns, indexing="ij"), -1), inner)
    return tf.cast(kernel.apply(tf.zeros([1, 1, 2], inner), offsets, example_ndims=2), dtype)


def as_dtype(value, dtype) -> tf.Tensor:
    """``value`` (a Python number, array or tensor) in ``dtype``, without a float32 detour."""
    return tf.cast(tf.convert_to_tensor(value, dtype_hint=dtype), dtype)


def as_complex(real) -> tf.Tensor:
    """A real tensor as complex (``tf.complex``: its gradient stays real, unlike ``tf.cast``)."""
    return tf.complex(real, tf.zeros_like(real))


def real_spectrum(circular_table) -> tf.Tensor:
    """``rfft2d`` of a symmetric circular table: real eigenvalues, shape ``[L1, L2 // 2 + 1]``."""
    return tf.math.real(tf.signal.rfft2d(circular_table))


class GridKernel(tf.linalg.LinearOperator):
    """The covariance ``K`` (``[N, N]``, ``N = H W``) of a stationary kernel on an ``H x W`` grid.

    Args:
      kernel: a stationary ``tfp.math.psd_kernels`` kernel over ``(row, column)`` points (checked
        by :func:`check_stationary` unless ``check=False``).
      height, width: the grid.
      dtype: float32 or float64 (the kernel is evaluated in it).
      truncation: the table's truncation tolerance (module docstring); 0 keeps the full table.
      periodic: the torus covariance instead of the open grid's (FFT size ``H x W``; eigenvalues
        below 0 are clamped to 0).
      check: check stationarity (skip it when the same kernel was checked before).
      radii: the truncation radii ``(R1, R2)`` to use instead of choosing them (to keep the FFT
        shape fixed while the kernel's parameters change, e.g. in a fit).

    The table (``self.table``, circular on ``self.fft_shape``) and its real spectrum
    (``self.spectrum``, the eigenvalues of the circulant embedding, ``[L1, L2 // 2 + 1]``) are
    computed once, differentiably in the kernel's parameters.
    """

    def __init__(self, kernel, height: int, width: int, dtype=tf.float64,
                 truncation: float = TRUNCATION, periodic: bool = False, check: bool = True,
                 radii: Optional[Tuple[int, int]] = None, name: str = "GridKernel"):
        dtype = tf.as_dtype(dtype)
        if dtype not in (tf.float32, tf.float64):
            raise TfdipError(f"the grid operator works in float32 or float64, got {dtype.name}")
        if check:
            check_stationary(kernel, height, width, evaluation_dtype(kernel, dtype))
        self.height, self.width, self.periodic = int(height), int(width), bool(periodic)
        if periodic:
            self.radii = (self.height // 2, self.width // 2)
            self.fft_shape = (self.height, self.width)
            self.table = torus_table(kernel, self.height, self.width, dtype)
            self.spectrum = tf.maximum(real_spectrum(self.table), 0.0)
        else:
            full = kernel_table(kernel, self.height - 1, self.width - 1, dtype)
            if radii is not None:
                self.radii = (min(int(radii[0]), self.height - 1), min(int(radii[1]), self.width - 1))
            elif truncation > 0:
                self.radii = truncation_radii(full.numpy(), truncation)
            else:
                self.radii = (self.height - 1, self.width - 1)
            self.fft_shape = (fast_fft_size(self.height + self.radii[0]),
                              fast_fft_size(self.width + self.radii[1]))
            self.table = circulant_table(full, self.radii, self.fft_shape)
            self.spectrum = real_spectrum(self.table)
        self.variance = self.table[0, 0]
        super().__init__(dtype=dtype, is_self_adjoint=True, is_positive_definite=None,
                         is_square=True, name=name)

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def _shape(self):
        return tf.TensorShape([self.num_pixels, self.num_pixels])

    def _shape_tensor(self):
        return tf.constant([self.num_pixels, self.num_pixels], tf.int32)

    def apply(self, vectors):
        """``K v`` for row vectors ``v`` of shape ``[..., M, N]`` (images flattened row-major)."""
        return self.apply_with(self.spectrum, vectors)

    def apply_with(self, spectrum, vectors):
        """:meth:`apply` with the spectrum given (a tensor argument of compiled solvers)."""
        batch = tf.shape(vectors)[:-1]
        images = tf.reshape(vectors, tf.concat([batch, [self.height, self.width]], 0))
        return tf.reshape(self.convolve_with(spectrum, images), tf.shape(vectors))

    def convolve(self, images):
        """``K v`` for images ``[..., H, W]``."""
        return self.convolve_with(self.spectrum, images)

    def convolve_with(self, spectrum, images):
        """:meth:`convolve` with the spectrum given."""
        transformed = tf.signal.rfft2d(images, fft_length=self.fft_shape)
        product = tf.signal.irfft2d(transformed * as_complex(spectrum),
                                    fft_length=self.fft_shape)
        return product[..., :self.height, :self.width]

    def _matmul(self, x, adjoint=False, adjoint_arg=False):
        rows = x if adjoint_arg else tf.linalg.matrix_transpose(x)
        return tf.linalg.matrix_transpose(self.apply(rows))

    def _diag_part(self):
        return tf.fill([self.num_pixels], self.variance)

    def _to_dense(self):
        return self.matmul(tf.eye(self.num_pixels, dtype=self.dtype))


class ObservedGridKernel(tf.linalg.LinearOperator):
    """``A = P K P^T + s^2 I``, shape ``[n, n]``: the covariance of the ``n`` known pixels' values.

    Args:
      grid_kernel: the :class:`GridKernel` ``K``.
      known: boolean ``(H, W)``, True at the known pixels (``P`` takes them in row-major order).
      noise_variance: ``s^2`` (a scalar, tensor or variable).
    """

    def __init__(self, grid_kernel: GridKernel, known, noise_variance, name="ObservedGridKernel"):
        known = np.asarray(known, bool)
        if known.shape != (grid_kernel.height, grid_kernel.width):
            raise TfdipError(f"the mask is {known.shape[0]}x{known.shape[1]} but the grid is "
                             f"{grid_kernel.height}x{grid_kernel.width}")
        self.grid_kernel = grid_kernel
        self.known = known
        self.full = bool(known.all())
        flat = known.ravel()
        self.known_index = tf.constant(np.flatnonzero(flat), tf.int32)
        # Position of every pixel in the known list, or n (a zero slot) for a missing pixel.
        slots = np.full(flat.size, flat.sum(), np.int32)
        slots[flat] = np.arange(flat.sum(), dtype=np.int32)
        self.slots = tf.constant(slots)
        self.noise_variance = as_dtype(noise_variance, grid_kernel.dtype)
        super().__init__(dtype=grid_kernel.dtype, is_self_adjoint=True, is_square=True, name=name)

    @property
    def num_known(self) -> int:
        return int(self.known.sum())

    def _shape(self):
        return tf.TensorShape([self.num_known, self.num_known])

    def _shape_tensor(self):
        return tf.constant([self.num_known, self.num_known], tf.int32)

    def scatter(self, values):
        """``P^T v``: known values ``[..., M, n]`` onto the grid ``[..., M, N]`` (zeros elsewhere)."""
        if self.full:
            return values
        padded = tf.concat([values, tf.zeros_like(values[..., :1])], axis=-1)
        return tf.gather(padded, self.slots, axis=-1)

    def gather(self, values):
        """``P v``: grid values ``[..., M, N]`` at the known pixels ``[..., M, n]``."""
        return values if self.full else tf.gather(values, self.known_index, axis=-1)

    @property
    def structure(self):
        """What fixes the compiled form of :meth:`apply_with`: grid, FFT shape, mask, dtype."""
        kernel = self.grid_kernel
        return (kernel.height, kernel.width, kernel.fft_shape, self.known.tobytes(),
                self.dtype.name)

    @property
    def operands(self):
        """The tensors :meth:`apply_with` takes: ``(spectrum, noise_variance)``."""
        return (self.grid_kernel.spectrum, self.noise_variance)

    def apply(self, vectors):
        """``A v`` for row vectors ``[..., M, n]``."""
        return self.apply_with(self.operands, vectors)

    def apply_with(self, operands, vectors):
        """:meth:`apply` with :attr:`operands` given (tensor arguments of compiled solvers)."""
        spectrum, noise_variance = operands
        return (self.gather(self.grid_kernel.apply_with(spectrum, self.scatter(vectors)))
                + noise_variance * vectors)

    def _matmul(self, x, adjoint=False, adjoint_arg=False):
        rows = x if adjoint_arg else tf.linalg.matrix_transpose(x)
        return tf.linalg.matrix_transpose(self.apply(rows))

    def _diag_part(self):
        return tf.fill([self.num_known], self.grid_kernel.variance + self.noise_variance)

    def _to_dense(self):
        return self.matmul(tf.eye(self.num_known, dtype=self.dtype))


def solve_periodic(grid_kernel: GridKernel, noise_variance, images, eigenvalue_floor: Optional[float] = None):
    """``(K + s^2 I)^-1 v`` on the torus by FFT, for images ``[..., H, W]`` (``grid_kernel.periodic``).

    ``eigenvalue_floor`` (default: the dtype's tiny) guards the division where ``s^2 = 0``.
    """
    if not grid_kernel.periodic:
        raise TfdipError("the closed-form solve needs the periodic (torus) grid kernel")
    floor = eigenvalue_floor or float(np.finfo(grid_kernel.dtype.as_numpy_dtype).tiny)
    denominator = tf.maximum(grid_kernel.spectrum + as_dtype(noise_variance, grid_kernel.dtype),
                             floor)
    transformed = tf.signal.rfft2d(images, fft_length=grid_kernel.fft_shape)
    return tf.signal.irfft2d(transformed / as_complex(denominator),
                             fft_length=grid_kernel.fft_shape)


def wiener_filter(grid_kernel: GridKernel, noise_variance, centred_images):
    """Posterior mean minus prior mean on a full periodic grid: ``K (K + s^2 I)^-1 (y - m)``.

    In the Fourier domain every frequency is shrunk by ``lambda / (lambda + s^2)``, ``lambda`` the
    torus spectrum of ``k`` (the Wiener filter). ``centred_images``: ``[..., H, W]``.
    """
    return grid_kernel.convolve(solve_periodic(grid_kernel, noise_variance, centred_images))


def memory_bytes(height: int, width: int, fft_shape: Tuple[int, int], columns: int,
                 dtype=tf.float64) -> int:
    """A working-set estimate of a batched solve with ``columns`` right-hand sides.

    CG keeps 5 grid-sized arrays per column (solution, residual, direction, product, preconditioned
    residual) and an FFT needs a complex ``L1 x (L2 / 2 + 1)`` buffer and a real ``L1 x L2`` one per
    column, twice over for TensorFlow's temporaries.
    """
    item = tf.as_dtype(dtype).size
    grid = height * width * item
    fft = fft_shape[0] * (fft_shape[1] // 2 + 1) * 2 * item + fft_shape[0] * fft_shape[1] * item
    return int(columns * (5 * grid + 2 * fft) + 4 * fft)


def required_fft_shape(height: int, width: int) -> Tuple[int, int]:
    """The largest FFT shape :class:`GridKernel` can choose (no truncation): for memory estimates."""
    return fast_fft_size(2 * height - 1), fast_fft_size(2 * width - 1)


class CirculantPreconditioner:
    """``M = P (C + s^2 I)^-1 P^T ~ A^-1``: the torus (circulant-embedding) inverse, restricted to the known pixels.

    ``C`` is the circulant matrix on the operator's FFT shape whose top-left block is ``K``
    (eigenvalues: the grid kernel's spectrum, clamped at 0). One application costs one FFT pair,
    as much as a product with ``A``; ``benchmarks/gp_scaling.py`` measures whether the saved
    iterations pay for it. Duck-typed for :func:`tfdip.gp.cg.conjugate_gradients`.
    """

    def __init__(self, operator: ObservedGridKernel):
        self.operator = operator
        self.dtype = operator.dtype

    @property
    def structure(self):
        return ("circulant",) + self.operator.structure

    @property
    def operands(self):
        return (tf.maximum(self.operator.grid_kernel.spectrum, 0.0), self.operator.noise_variance)

    def apply_with(self, operands, vectors):
        spectrum, noise_variance = operands
        grid = self.operator.grid_kernel
        batch = tf.shape(vectors)[:-1]
        images = tf.reshape(self.operator.scatter(vectors),
                            tf.concat([batch, [grid.height, grid.width]], 0))
        transformed = tf.signal.rfft2d(images, fft_length=grid.fft_shape)
        solved = tf.signal.irfft2d(transformed / as_complex(spectrum + noise_variance),
                                   fft_length=grid.fft_shape)[..., :grid.height, :grid.width]
        flat = tf.reshape(solved, tf.concat([batch, [grid.num_pixels]], 0))
        return self.operator.gather(flat)
