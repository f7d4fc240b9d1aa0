#!/usr/bin/python3
"""Export a network written in PyTorch as TorchScript for difflab's `torchscript` network plugin.

The module's forward(noisy_images [B, C, H, W], noise_variances [B, 1, 1, 1]) returns [B, C, H, W];
difflab trains it (its parameters and buffers become the plugin's) and samples with it like any
other network. The example below is a small residual U-Net in the seed's spirit, with the noise
variance's sinusoidal embedding concatenated at the input.

    /usr/bin/python3 tools/export_network.py --channels 1 --out data/my_network.pt
    difflab run experiments/quickstart.toml --set network.plugin=torchscript \
        --set network.model=data/my_network.pt

Uses Debian's python3-torch; nothing is downloaded.
"""
import argparse
import math

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, in_width: int, width: int):
        super().__init__()
        self.norm = nn.GroupNorm(4, in_width)
        self.conv1 = nn.Conv2d(in_width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.skip = nn.Conv2d(in_width, width, 1) if in_width != width else nn.Identity()

    def forward(self, x):
        h = self.conv1(torch.nn.functional.silu(self.norm(x)))
        return self.skip(x) + self.conv2(torch.nn.functional.silu(h))


class SmallUNet(nn.Module):
    def __init__(self, channels: int, width: int = 32, embedding_dims: int = 16):
        super().__init__()
        self.embedding_dims = embedding_dims
        self.conv_in = nn.Conv2d(channels + embedding_dims, width, 3, padding=1)
        self.down = Block(width, width)
        self.mid = Block(width, 2 * width)
        self.up = Block(3 * width, width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # predicts zeros at first, like the seed's network
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, noise_variances):
        # sines and cosines of the variance at log-spaced frequencies 1 .. 1000 (the seed's)
        half = self.embedding_dims // 2
        frequencies = torch.exp(torch.linspace(0.0, math.log(1000.0), half, device=noise_variances.device))
        angles = 2.0 * math.pi * frequencies.view(1, half, 1, 1) * noise_variances
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(self, noisy_images, noise_variances):
        embedding = self.embed(noise_variances).expand(-1, -1, noisy_images.shape[2], noisy_images.shape[3])
        x = self.conv_in(torch.cat([noisy_images, embedding.to(noisy_images.dtype)], dim=1))
        skip = self.down(x)
        x = self.mid(torch.nn.functional.avg_pool2d(skip, 2))
        x = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.conv_out(self.up(torch.cat([x, skip], dim=1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, default=1, help="image channels (1 for Fashion-MNIST)")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--out", required=True, help="TorchScript file to write")
    args = parser.parse_args()
    torch.manual_seed(0)
    scripted = torch.jit.script(SmallUNet(args.channels, args.width))
    scripted.save(args.out)
    parameters = sum(p.numel() for p in scripted.parameters())
    print(f"wrote {args.out}: {parameters} parameters, forward(noisy_images, noise_variances)")


if __name__ == "__main__":
    main()
