"""The ``tfdip`` command line.

    tfdip demo [--out DIR]
    tfdip corrupt CLEAN -o OBS [--noise SIGMA_255] [--drop FRACTION | --mask MASK] [--downscale F]
    tfdip denoise OBS --sigma SIGMA_255 -o OUT [--method M] [...]
    tfdip inpaint OBS --mask MASK -o OUT [...]
    tfdip superres OBS --factor F -o OUT [...]
    tfdip batch FOLDER_OR_MANIFEST -o DIR --task TASK [...] [--engine local|ray] [--workers N]
    tfdip gp OBS [--mask M] [--sigma S] --kernel K -o OUT [--std-out STD.png] [--solver S] [...]
    tfdip kernel [--net NAME] [--depth D | --levels L] --plot OUT.png

Bad input ends with one line on stderr (``tfdip: error: ...``) and exit status 2; nothing
half-written is left behind (every output is written to a temporary file and renamed).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

METHODS = ("sgd", "paper", "sgld", "psgld", "mala", "ula")
EXIT_USAGE = 2


def _quiet_runtime() -> None:
    """Keep TensorFlow's C++ start-up lines (oneDNN, CUDA probing, absl) off the user's terminal.

    TensorFlow writes them straight to file descriptor 2 while it loads and initialises its
    devices, before any Python logging setting applies, so stderr is pointed at /dev/null for
    exactly that window and restored afterwards.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.constant(0.0) + 1.0  # initialise the devices now, while stderr is silenced
        tf.get_logger().setLevel("ERROR")
        tf.autograph.set_verbosity(0)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


# ---------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _whole_number_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole_number_at_least(1)
_nonnegative_int = _whole_number_at_least(0)


def _iterations(text):
    """An argparse type: ``auto`` or a whole number of steps >= 1."""
    return "auto" if text == "auto" else _positive_int(text)


def _add_method_options(parser):
    """How to restore: the method, its budget and step-size schedule, the net, the seed and the
    compute precision (single image and batch)."""
    parser.add_argument("--method", choices=METHODS, default="psgld",
                        help="psgld (default): preconditioned Langevin on the weights, posterior "
                             "mean and std; sgd: the DIP baseline (early stopping); paper: the "
                             "GP-DIP authors' recipe; sgld: plain Langevin; mala/ula: TFP MCMC")
    parser.add_argument("--iterations", type=_iterations,
                        help="training steps, or 'auto' (paper, sgld, psgld): burn-in ends when "
                             "the loss stops drifting and sampling stops when the Monte Carlo error of the posterior mean is below 0.1 of "
                             "the posterior std (method default otherwise)")
    parser.add_argument("--lr", type=float, help="learning rate / Langevin step size")
    parser.add_argument("--seed", type=_nonnegative_int, default=0,
                        help="seed of every random stream; chain k uses SeedSequence(seed, (k,))")
    parser.add_argument("--burn-in", type=int, help="steps before posterior samples are kept")
    parser.add_argument("--thin", type=_positive_int, help="keep every n-th step as a sample")
    parser.add_argument("--chains", type=_positive_int, default=1, help="independent chains")
    parser.add_argument("--channels", type=_positive_int, default=128,
                        help="width of the skip net (default 128, the reference)")
    parser.add_argument("--checkpoint-every", type=_positive_int,
                        help="steps between checkpoints, any number >= 1 (default: a tenth of "
                             "the run); a checkpoint is also saved when each chain ends")
    parser.add_argument("--stop", choices=("wmv",),
                        help="sgd only: stop by ES-WMV (Wang et al. 2023: the smallest windowed "
                             "variance of the iterates, window 100, patience 1000) and keep that "
                             "iterate; --iterations is then the cap (default 5000)")
    parser.add_argument("--schedule", choices=("constant", "cyclical", "decay"),
                        help="sgld / psgld step size: constant, cyclical (cSGLD cosine cycles of "
                             "500 steps from 2x --lr to 0) or decay (from 4x --lr at step 0 to "
                             "--lr at step 3000, smaller after); default decay for psgld on "
                             "noise-free inpainting / super-resolution, else constant")
    parser.add_argument("--max-iterations", type=_positive_int,
                        help="--iterations auto: the most steps per chain (default 10000); a run "
                             "that reaches it says so")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"),
                        default="float32",
                        help="the network's compute precision (default float32); bfloat16 / "
                             "float16 are mixed precision: weights, loss and sampler state stay "
                             "float32, float16 scales the loss")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=False,
                        help="compile the training steps with XLA (default --no-xla: slower on "
                             "CPUs; try it on a GPU, see benchmarks/gpu_check.py)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_restoration_options(parser):
    """The single-image commands' options: the method options and where the outputs go."""
    parser.add_argument("-o", "--out", required=True, help="restored image (.png/.jpg/.tif/.npy)")
    _add_method_options(parser)
    parser.add_argument("--reference", help="clean image, to report PSNR / SSIM")
    parser.add_argument("--report", help="write a JSON report here")
    parser.add_argument("--std-out", help="colour-mapped posterior std map (.png)")
    parser.add_argument("--std-npy", help="posterior std as a float .npy (H, W, C)")
    parser.add_argument("--logdir", help="TensorBoard log folder")
    parser.add_argument("--export", help="write a TF SavedModel of the result into this folder")
    parser.add_argument("--checkpoint-dir", help="save the run's state here as it goes (a new "
                                                    "folder, or the folder of the run to resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --checkpoint-dir (same image, task, "
                             "method, settings and seed); starts it if nothing was saved yet")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfdip", description="Bayesian Deep Image Prior restoration with uncertainty maps.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="restore a built-in image and write a figure")
    demo.add_argument("--out", default="tfdip_demo", help="output folder (created)")
    demo.add_argument("--iterations", type=_positive_int, default=None)
    demo.add_argument("--seed", type=_nonnegative_int, default=0)
    demo.add_argument("--quiet", action="store_true")

    corrupt = sub.add_parser("corrupt", help="simulate an observation from a clean image")
    corrupt.add_argument("clean")
    corrupt.add_argument("-o", "--out", required=True)
    corrupt.add_argument("--noise", type=float, default=0.0,
                         help="Gaussian noise std on 0..255, added to the known pixels only "
                              "(dropped pixels stay 0)")
    group = corrupt.add_mutually_exclusive_group()
    group.add_argument("--drop", type=float, help="fraction of pixels to drop at random")
    group.add_argument("--mask", help="mask image: nonzero = known pixel")
    corrupt.add_argument("--downscale", type=int, help="Lanczos-2 down-sampling factor")
    corrupt.add_argument("--seed", type=_nonnegative_int, default=0)
    corrupt.add_argument("--mask-out", help="write the mask used (255 = known)")

    denoise = sub.add_parser("denoise", help="remove Gaussian noise")
    denoise.add_argument("observation")
    denoise.add_argument("--sigma", type=float, required=True, help="noise std on 0..255")
    _add_restoration_options(denoise)

    inpaint = sub.add_parser("inpaint", help="fill in missing pixels")
    inpaint.add_argument("observation")
    inpaint.add_argument("--mask", required=True, help="mask image: nonzero = known pixel")
    inpaint.add_argument("--sigma", type=float, default=0.0, help="noise std on 0..255")
    _add_restoration_options(inpaint)

    superres = sub.add_parser("superres", help="super-resolve by an integer factor")
    superres.add_argument("observation")
    superres.add_argument("--factor", type=int, required=True)
    superres.add_argument("--sigma", type=float, default=0.0, help="noise std on 0..255")
    _add_restoration_options(superres)

    batch = sub.add_parser("batch", help="restore a folder or manifest of images, resumably, on "
                                         "local processes or a Ray cluster")
    batch.add_argument("input", help="folder of images, or a manifest (.csv or .jsonl) with the "
                                     "columns input, mask, reference, sigma, factor, task, method, "
                                     "iterations (a number or auto), max_iterations, stop, "
                                     "schedule, seed (all but input optional; a value overrides "
                                     "the option for its item)")
    batch.add_argument("-o", "--out", required=True,
                       help="output folder (created): one folder per item, summary.csv/.md")
    batch.add_argument("--task", choices=("denoise", "inpaint", "superres"),
                       help="the items' task (a manifest's task column overrides it)")
    batch.add_argument("--sigma", type=float, help="noise std on 0..255 (denoise: required)")
    batch.add_argument("--mask", help="inpaint: one mask for every item (nonzero = known pixel)")
    batch.add_argument("--factor", type=int, help="superres: the factor")
    _add_method_options(batch)
    batch.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local (default): worker processes on this machine; ray: Ray tasks")
    batch.add_argument("--workers", type=_positive_int,
                       help="local engine: worker processes (default 1); each gets cores / "
                            "workers TensorFlow threads")
    batch.add_argument("--ray-address",
                       help="ray engine: 'auto' or HOST:PORT of a running cluster (default: "
                            "start a local Ray instance)")
    batch.add_argument("--cpus-per-task", type=float,
                       help="ray engine: CPUs per task (default 1; also its TensorFlow threads)")
    batch.add_argument("--gpus-per-task", type=float, help="ray engine: GPUs per task (default 0)")

    gp = sub.add_parser("gp", help="restore with a Gaussian process (any size with the grid solver)")
    gp.add_argument("observation")
    gp.add_argument("--mask", help="mask image: nonzero = known pixel (inpainting)")
    gp.add_argument("--sigma", type=float, help="noise std on 0..255 (denoising)")
    gp.add_argument("--kernel", default="rbf",
                    help="rbf, matern12, matern32, matern52 or dip (the analytic kernel of the "
                         "2-level, 1024-channel skip net of the paper's GP experiment)")
    gp.add_argument("--mean", choices=("constant", "zero"), default="constant",
                    help="prior mean: one fitted constant per channel, or zero (the paper's "
                         "DIP-kernel setting)")
    gp.add_argument("--no-fit", action="store_true", help="keep the starting hyper-parameters")
    gp.add_argument("--solver", choices=("auto", "dense", "grid"), default="auto",
                    help="dense: exact, at most 64x64 pixels; grid: FFT operators and conjugate "
                         "gradients, any size, stationary kernels; auto (default): dense when "
                         "the image fits it")
    gp.add_argument("--samples", type=_positive_int,
                    help="grid solver: posterior samples for the std map (default 64 with "
                         "--std-out: Monte Carlo error 8.9%%; needs --std-out)")
    gp.add_argument("--cg-tolerance", type=float, default=1e-4,
                    help="grid solver: relative residual of the posterior's conjugate gradients (1e-4; "
                         "the fit's solves stop at 1e-3)")
    gp.add_argument("--cg-max-iterations", type=_positive_int, default=5000,
                    help="grid solver: iteration cap of the conjugate gradients (5000)")
    gp.add_argument("--seed", type=int, default=0, help="grid solver: seed of the samples")
    gp.add_argument("-o", "--out", required=True)
    gp.add_argument("--std-out", help="colour-mapped posterior std map (.png)")
    gp.add_argument("--reference", help="clean image, to report PSNR / SSIM")
    gp.add_argument("--report", help="write a JSON report here")
    gp.add_argument("--quiet", action="store_true", help="no progress bar")

    kernel = sub.add_parser("kernel", help="draw the infinite-width covariance of a DIP network")
    kernel.add_argument("--net", default="conv_stack",
                        choices=("conv_stack", "encoder_decoder", "skip"))
    kernel.add_argument("--depth", type=_positive_int, help="conv_stack only: hidden layers")
    kernel.add_argument("--levels", type=_positive_int,
                        help="skip / encoder_decoder only: levels (default 5)")
    kernel.add_argument("--activation", choices=("relu", "leaky_relu", "erf"))
    kernel.add_argument("--upsample", choices=("bilinear", "nearest"),
                        help="skip / encoder_decoder only")
    kernel.add_argument("--input-smoothing", type=float, default=0.0,
                        help="std (pixels) of the Gaussian filter smoothing the white-noise input")
    kernel.add_argument("--max-offset", type=_positive_int, default=16)
    kernel.add_argument("--plot", required=True, help="output figure (.png, .pdf, .svg)")
    return parser


# ---------------------------------------------------------------------------- commands
def _version() -> str:
    from tfdip.outputs import package_version

    return package_version()


def _check_outputs(images=(), report=None, npy=None, folder=None):
    """Fail before any work if an output cannot be written (missing folder, bad extension)."""
    from tfdip import io
    from tfdip.errors import TfdipError

    for path in images:
        if path:
            io.check_output_path(path, io.IMAGE_FORMATS)
    if report:
        io.check_output_path(report, (".json",))
    if npy:
        io.check_output_path(npy, (".npy",))
    if folder:
        parent = os.path.dirname(os.path.abspath(folder))
        if not os.path.isdir(parent):
            raise TfdipError(f"folder {parent} does not exist; create it or choose another path")


def cmd_restore(args) -> int:
    from tfdip.callbacks import ProgressBar, TensorBoardLogger
    from tfdip.errors import TfdipError
    from tfdip.outputs import restoration_report, write_restoration
    from tfdip.problem import load_problem
    from tfdip.recipes import refuse_for_mcmc
    from tfdip.restoration import restore

    _check_outputs(images=(args.out, args.std_out), report=args.report, npy=args.std_npy)
    if (args.std_out or args.std_npy) and args.method == "sgd":
        raise TfdipError("--method sgd gives no posterior std; use --method paper, sgld or psgld")
    if args.export:
        from tfdip.export import check_export_target

        check_export_target(args.export)
        if args.chains > 1:
            raise TfdipError("--export saves one chain's network; use it with --chains 1")
    refuse_for_mcmc(args.method, {
        "--export": args.export, "--checkpoint-dir": args.checkpoint_dir,
        "--checkpoint-every": args.checkpoint_every, "--resume": args.resume,
        "--logdir": args.logdir, "--precision": args.precision != "float32", "--xla": args.xla})
    for flag, value in (("--checkpoint-every", args.checkpoint_every), ("--resume", args.resume)):
        if value and not args.checkpoint_dir:
            raise TfdipError(f"{flag} needs --checkpoint-dir, the folder of the run's checkpoints")
    problem = load_problem(args.observation, args.command, sigma=args.sigma,
                           mask=getattr(args, "mask", None), factor=getattr(args, "factor", None),
                           reference=args.reference)

    def callbacks(chain):
        found = []
        if not args.quiet:
            prefix = f"chain {chain + 1}/{args.chains} " if args.chains > 1 else ""
            found.append(ProgressBar(args.iterations or 0, prefix=prefix))
        if args.logdir:
            found.append(TensorBoardLogger(os.path.join(args.logdir, f"chain{chain}")))
        return found

    result = _run_restore(restore, problem, args, callbacks)
    write_restoration(result, problem.observed, args.out, std_png=args.std_out,
                      std_npy=args.std_npy)
    if args.export:
        result.models[0].export(args.export)
    report = restoration_report(result, task=problem.physics.name, chains=args.chains,
                                observation=problem.observed.pixels, reference=problem.reference)
    if args.report:
        from tfdip import io

        io.write_json(args.report, report)
    _print_summary(report)
    return 0


def _run_restore(restore, problem, args, callbacks):
    from tfdip.recipes import make_recipe

    phys = problem.physics
    recipe = make_recipe(args.method, phys.name, iterations=args.iterations, learning_rate=args.lr,
                         burn_in=args.burn_in, thin=args.thin, sigma=phys.sigma,
                         max_iterations=args.max_iterations, stop=args.stop,
                         schedule=args.schedule)
    iterations = "auto" if recipe.is_auto else recipe.iterations
    args.iterations = recipe.iterations   # the progress bar's total: the cap of an auto budget
    return restore(problem.observed.pixels, phys, method=args.method, iterations=iterations,
                   max_iterations=args.max_iterations, learning_rate=args.lr, net="skip",
                   net_options=_net_options(args.channels),
                   reference=problem.reference, seed=args.seed, burn_in=args.burn_in,
                   thin=args.thin, chains=args.chains, callbacks=callbacks,
                   checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
                   resume=args.resume, stop=args.stop, schedule=args.schedule,
                   precision=args.precision, jit_compile=args.xla)


def _net_options(channels: int) -> dict:
    """The skip net's options for ``--channels``."""
    return {"channels_down": channels, "channels_up": channels}


def _print_summary(report) -> None:
    from tfdip.outputs import stopping_notes

    steps = f"{report['iterations']} steps, " if report.get("iterations") else ""
    line = [f"{report['task']} ({report['method']}, {steps}{report['seconds']:.1f} s)"]
    if "psnr" in report:
        line.append(f"PSNR {report['psnr']:.2f} dB")
        if "psnr_observed" in report:
            line.append(f"(observation {report['psnr_observed']:.2f} dB)")
    if report.get("verdict"):
        line.append(f"sampler: {report['verdict']}")
    line.extend(stopping_notes(report))
    if report.get("rollbacks"):
        line.append(f"{report['rollbacks']} roll-back(s) to the last good weights "
                    f"(PSNR collapse or non-finite loss)")
    print("  ".join(line))


def cmd_batch(args) -> int:
    from tfdip.batch import Defaults, read_items, run_batch
    from tfdip.errors import TfdipError

    _check_outputs(folder=args.out)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise TfdipError(f"--out {args.out} is a file; give a folder")
    local_only = {"--workers": args.workers}
    ray_only = {"--ray-address": args.ray_address, "--cpus-per-task": args.cpus_per_task,
                "--gpus-per-task": args.gpus_per_task}
    for option, value in (ray_only if args.engine == "local" else local_only).items():
        if value is not None:
            raise TfdipError(f"{option} does not apply to --engine {args.engine}")
    defaults = Defaults(
        task=args.task, sigma=args.sigma, mask=args.mask, factor=args.factor, method=args.method,
        iterations=args.iterations, max_iterations=args.max_iterations, stop=args.stop,
        schedule=args.schedule, learning_rate=args.lr, burn_in=args.burn_in, thin=args.thin,
        seed=args.seed, chains=args.chains, net_options=_net_options(args.channels),
        checkpoint_every=args.checkpoint_every, precision=args.precision, jit_compile=args.xla)
    items = read_items(args.input, defaults)
    os.makedirs(args.out, exist_ok=True)
    engine = _batch_engine(args)
    start = time.perf_counter()
    try:
        print(f"{len(items)} item(s) on {engine.describe()}", file=sys.stderr)
        result = run_batch(items, args.out, engine,
                           progress_stream=None if args.quiet else sys.stderr)
    except KeyboardInterrupt:
        engine.abort()
        print(f"\ntfdip: interrupted after {time.perf_counter() - start:.0f} s; finished items "
              f"are kept: run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        engine.close()
    ok = len(result.rows) - result.failed
    print(f"{ok} ok ({result.skipped} already finished), {result.failed} failed; summary in "
          f"{os.path.join(args.out, 'summary.md')}")
    return 1 if result.failed else 0


def _batch_engine(args):
    from tfdip.batch import LocalEngine, RayEngine

    if args.engine == "ray":
        return RayEngine(args.ray_address, cpus_per_task=args.cpus_per_task or 1.0,
                         gpus_per_task=args.gpus_per_task or 0.0)
    return LocalEngine(args.workers or 1, log_path=os.path.join(args.out, "workers.log"))


def cmd_corrupt(args) -> int:
    import numpy as np

    from tfdip import io, physics
    from tfdip.errors import TfdipError

    _check_outputs(images=(args.out, args.mask_out))
    clean = io.read_image(args.clean).pixels
    if not 0 <= args.noise <= 255:
        raise TfdipError(f"--noise must be in [0, 255] (on the 0..255 scale), got {args.noise}")
    if not (args.noise or args.drop is not None or args.mask or args.downscale):
        raise TfdipError("nothing to do: give --noise, --drop, --mask or --downscale")
    x = clean
    if args.downscale:
        x = physics.SuperResolution(args.downscale).simulate(x, seed=args.seed)
    mask = None
    if args.drop is not None:
        if not 0 <= args.drop < 1:
            raise TfdipError(f"--drop must be in [0, 1), got {args.drop}")
        mask = physics.Inpainting.bernoulli(x.shape[:2], 1.0 - args.drop, seed=args.seed).mask
    elif args.mask:
        mask = io.read_mask(args.mask, x.shape[:2])
    sigma = args.noise / 255.0
    degradation = physics.Denoising(sigma) if mask is None else physics.Inpainting(mask, sigma)
    x = degradation.simulate(x, seed=args.seed + 1)
    io.write_image(args.out, x)
    if args.mask_out:
        if mask is None:
            raise TfdipError("--mask-out needs --drop or --mask")
        io.write_image(args.mask_out, np.asarray(mask, np.float32).reshape(x.shape[:2] + (1,)))
    print(f"wrote {args.out} ({x.shape[1]}x{x.shape[0]}x{x.shape[2]})")
    return 0


class _GPProgress:
    """A one-line progress bar per stage of the grid solver (fit steps, CG iterations, samples)."""

    LABELS = {"fit": "fit (Newton steps)", "mean": "posterior mean (CG)", "samples": "std samples"}

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.stage = None

    def __call__(self, stage, done, total, detail):
        if self.stage not in (None, stage):
            self.stream.write("\n")
        self.stage = stage
        filled = int(round(24 * min(done / max(total, 1), 1.0)))
        self.stream.write(f"\r{self.LABELS.get(stage, stage)} [{'#' * filled}"
                          f"{'.' * (24 - filled)}] {done}/{total} {detail}" + " " * 8)
        self.stream.flush()

    def close(self):
        """End the bar's line (before any other output)."""
        if self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.stage = None


def _gp_options(args, solver: str) -> dict:
    """gp_restore's solver keywords from the command line, refusing those that do not apply."""
    from tfdip.errors import TfdipError

    if args.samples is not None and not args.std_out:
        raise TfdipError("--samples sets the samples of the std map; give --std-out too")
    if solver == "dense":
        changed = [flag for flag, value, default in (
            ("--samples", args.samples, None), ("--cg-tolerance", args.cg_tolerance, 1e-4),
            ("--cg-max-iterations", args.cg_max_iterations, 5000), ("--seed", args.seed, 0))
            if value != default]
        if changed:
            raise TfdipError(f"{', '.join(changed)} only apply to the grid solver (the dense "
                             f"solver is exact); use --solver grid")
        return {}
    if not 0 < args.cg_tolerance < 1:
        raise TfdipError(f"--cg-tolerance must be in (0, 1), got {args.cg_tolerance}")
    samples = args.samples if args.samples is not None else (64 if args.std_out else 0)
    if samples == 1:
        raise TfdipError("a std map needs at least 2 --samples")
    options = {"samples": samples, "tolerance": args.cg_tolerance,
               "max_iterations": args.cg_max_iterations, "seed": args.seed}
    if not args.quiet:
        options["progress"] = _GPProgress()
    return options


def cmd_gp(args) -> int:
    from tfdip import io, metrics
    from tfdip.gp import choose_solver, gp_restore
    from tfdip.problem import sigma01
    from tfdip.viz import colormap

    _check_outputs(images=(args.out, args.std_out), report=args.report)
    observed = io.read_image(args.observation)
    mask = io.read_mask(args.mask, observed.pixels.shape[:2]) if args.mask else None
    reference = io.read_image(args.reference).pixels if args.reference else None
    sigma = None if args.sigma is None else sigma01(args.sigma)
    solver = choose_solver(args.solver, *observed.pixels.shape[:2])
    options = _gp_options(args, solver)
    try:
        result = gp_restore(observed.pixels, mask=mask, sigma=sigma, kernel=args.kernel,
                            fit=not args.no_fit, mean=args.mean, solver=solver, **options)
    finally:
        if "progress" in options:
            options["progress"].close()
    report = {"task": "inpainting" if mask is not None else "denoising", "method": "gp",
              **result.report(), "image_shape": list(result.mean.shape),
              "tfdip_version": _version()}
    report["seconds"] = round(result.seconds, 3)
    if reference is not None:
        report["psnr"] = metrics.psnr(result.mean, reference)
        report["ssim"] = metrics.ssim(result.mean, reference)
        report["psnr_observed"] = metrics.psnr(observed.pixels, reference)
    io.write_image(args.out, result.mean, alpha=observed.alpha, bit_depth=observed.bit_depth)
    if args.std_out:
        io.write_image(args.std_out, colormap(result.std))
    if args.report:
        io.write_json(args.report, report)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    _print_summary(dict(report, iterations=0, method=f"gp, {result.kernel_name} kernel, "
                                                     f"{result.solver} solver"))
    return 0


def cmd_kernel(args) -> int:
    from tfdip import nets
    from tfdip.kernels import plot_kernel

    from tfdip.errors import TfdipError

    _check_outputs(folder=args.plot)
    not_for = {"conv_stack": (("--levels", args.levels), ("--upsample", args.upsample)),
               "skip": (("--depth", args.depth),), "encoder_decoder": (("--depth", args.depth),)}
    given = [flag for flag, value in not_for[args.net] if value is not None]
    if given:
        raise TfdipError(f"{', '.join(given)} does not apply to --net {args.net}")
    options = {"init": "gaussian"}
    if args.activation:
        options["activation"] = args.activation
    if args.net == "conv_stack":
        if args.depth:
            options["depth"] = args.depth
    else:
        levels = args.levels or 5
        options.update(channels_down=(128,) * levels, channels_up=(128,) * levels)
        if args.net == "skip":
            options["channels_skip"] = (4,) * levels
        if args.upsample:
            options["upsample"] = args.upsample
    spec = nets.spec_for(args.net, **options)
    plot_kernel(spec, args.plot, max_offset=args.max_offset, input_smoothing=args.input_smoothing)
    print(f"wrote {args.plot}")
    return 0


def cmd_demo(args) -> int:
    from tfdip.demo import run_demo

    return run_demo(args.out, iterations=args.iterations, seed=args.seed, quiet=args.quiet)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """TfdipWarnings as one ``tfdip: warning: ...`` line on stderr (others stay silenced)."""
    print(f"tfdip: warning: {message}", file=sys.stderr)


COMMANDS = {"demo": cmd_demo, "corrupt": cmd_corrupt, "denoise": cmd_restore,
            "inpaint": cmd_restore, "superres": cmd_restore, "batch": cmd_batch, "gp": cmd_gp,
            "kernel": cmd_kernel}


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:     # --help, or a bad option (one line on stderr, status 2)
        return stop.code
    if args.version:
        print(_version())
        return 0
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    _quiet_runtime()
    from tfdip.errors import TfdipError, TfdipWarning

    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", TfdipWarning)
            warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except TfdipError as error:
        print(f"tfdip: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print("tfdip: error: out of memory; crop or downscale the image, or use --channels 64",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        engine.abort()
        print(f"\ntfdip: interrupted after {time.perf_counter() - start:.0f} s; nothing was written",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
