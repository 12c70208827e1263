"""Bayesian DIP denoising through the Keras API: compile / fit, TensorBoard, posterior, export.

    python examples/bayesian_denoising.py [--iterations 2000] [--out examples/output]

Uses scikit-image's ``camera`` (shipped with scikit-image), a 64x64 crop with Gaussian noise of
sigma 25/255. Writes a comparison figure, TensorBoard logs (``tensorboard --logdir OUT/logs``)
and a SavedModel (``OUT/savedmodel``) of the result.
"""
import argparse
import os

import numpy as np
from skimage import data

import tfdip
from tfdip import metrics, nets
from tfdip.callbacks import ProgressBar, TensorBoardLogger
from tfdip.inference import NoisyAdam
from tfdip.physics import Denoising
from tfdip.viz import comparison_figure


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--out", default=os.path.join("examples", "output"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    clean = data.camera()[80:208:2, 200:328:2, None].astype(np.float32) / 255.0  # 64x64 gray
    physics = Denoising(sigma=25 / 255)
    noisy = physics.simulate(clean, seed=0)

    spec = nets.SkipSpec(output_channels=1)             # the reference network, gray output
    dip = tfdip.DeepImagePrior(
        spec.build(), physics, noisy, size_multiple=spec.size_multiple, min_size=spec.min_size,
        input_noise_std=1 / 30, burn_in=int(0.35 * args.iterations), thin=10, reference=clean)
    dip.compile(optimizer=NoisyAdam(learning_rate=0.01, weight_decay=5e-8, noise_scale=2.0))
    dip.fit(args.iterations, log_every=50, callbacks=[
        ProgressBar(args.iterations), TensorBoardLogger(os.path.join(args.out, "logs"), 200)])

    mean, std = dip.restored("mean"), dip.moments.std.numpy()
    last = dip.restored("last")
    print(f"noisy {metrics.psnr(noisy, clean):.2f} dB, last iterate {metrics.psnr(last, clean):.2f}"
          f" dB, posterior mean {metrics.psnr(mean, clean):.2f} dB "
          f"({int(dip.moments.count.numpy())} samples)")
    comparison_figure(os.path.join(args.out, "bayesian_denoising.png"),
                      [("clean", clean), ("noisy", noisy), ("last iterate", last),
                       ("posterior mean", mean)], std=std)
    dip.export(os.path.join(args.out, "savedmodel"), overwrite=True)


if __name__ == "__main__":
    main()
