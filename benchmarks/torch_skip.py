"""The DIP ``skip`` generator in PyTorch, as the reference implementation builds it.

Used only by ``benchmarks/speed.py`` as the speed baseline (PyTorch is not a tfdip dependency).
Same architecture as :func:`tfdip.nets.skip` (reference.md section 2): NCHW tensors, reflection
padding, stride-2 down-sampling, bilinear up-sampling with half-pixel centres, BatchNorm in
training mode, in-place LeakyReLU(0.2), sigmoid output; 2,217,831 parameters with the defaults.
"""
from __future__ import annotations

import torch
from torch import nn


def conv(c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> nn.Module:
    """Reflection padding of (k - 1) / 2, then an unpadded convolution with bias."""
    return nn.Sequential(nn.ReflectionPad2d((kernel_size - 1) // 2),
                         nn.Conv2d(c_in, c_out, kernel_size, stride))


def bn_act(channels: int) -> list:
    return [nn.BatchNorm2d(channels), nn.LeakyReLU(0.2, inplace=True)]


class CenterCropCat(nn.Module):
    """Runs every branch on the input, crops the outputs to the smallest H, W, concatenates them."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        outputs = [branch(x) for branch in self.branches]
        height = min(o.shape[2] for o in outputs)
        width = min(o.shape[3] for o in outputs)
        cropped = [o[:, :, (o.shape[2] - height) // 2:(o.shape[2] - height) // 2 + height,
                     (o.shape[3] - width) // 2:(o.shape[3] - width) // 2 + width] for o in outputs]
        return torch.cat(cropped, dim=1)


def level(c_in: int, down, up, skip, i: int = 0) -> nn.Sequential:
    """Level ``i`` of the hourglass (and the levels below it): (N, c_in, H, W) -> (N, up_i, H, W)."""
    deep = [conv(c_in, down[i], 3, stride=2), *bn_act(down[i]),
            conv(down[i], down[i], 3), *bn_act(down[i])]
    if i + 1 < len(down):
        deep.append(level(down[i], down, up, skip, i + 1))
    deep.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    k = up[i + 1] if i + 1 < len(down) else down[i]
    skip_branch = nn.Sequential(conv(c_in, skip[i], 1), *bn_act(skip[i]))
    return nn.Sequential(
        CenterCropCat(skip_branch, nn.Sequential(*deep)),
        nn.BatchNorm2d(skip[i] + k),
        conv(skip[i] + k, up[i], 3), *bn_act(up[i]),
        conv(up[i], up[i], 1), *bn_act(up[i]),
    )


def torch_skip(input_channels: int = 32, output_channels: int = 3, channels=(128,) * 5,
               channels_skip=(4,) * 5) -> nn.Sequential:
    """The default DIP skip net (channels down = up = ``channels``)."""
    return nn.Sequential(
        level(input_channels, channels, channels, channels_skip),
        conv(channels[0], output_channels, 1),
        nn.Sigmoid(),
    )


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    print(parameter_count(torch_skip()))
