#!/usr/bin/python3
"""Reference benchmark: the seed's network and train step, eager, in Debian's python3-torch.

Not difflab: an independent port of keras_ddim_example.md's get_network and train_step, used
to put difflab's `difflab bench` figures side by side with plain PyTorch on the same machine.

    /usr/bin/python3 tools/bench_reference.py --image-size 32 --channels 1 --batch-size 64 \
        --precision fp32 --steps 20
Prints train_images_per_second, sample_images_per_second and peak_rss_mb like `difflab bench`.
"""
import argparse
import math
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualBlock(nn.Module):
    def __init__(self, input_width, width):
        super().__init__()
        self.residual_conv = nn.Conv2d(input_width, width, 1) if input_width != width else None
        self.norm = nn.BatchNorm2d(input_width, affine=False, momentum=0.01, eps=1e-3)
        self.conv1 = nn.Conv2d(input_width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        residual = self.residual_conv(x) if self.residual_conv is not None else x
        x = F.silu(self.conv1(self.norm(x)))
        return self.conv2(x) + residual


class ResidualUNet(nn.Module):
    def __init__(self, channels, widths, block_depth, embedding_dims=32, max_frequency=1000.0):
        super().__init__()
        self.widths, self.block_depth = widths, block_depth
        frequencies = torch.exp(torch.linspace(0.0, math.log(max_frequency), embedding_dims // 2))
        self.register_buffer("angular_speeds", (2.0 * math.pi * frequencies).view(1, -1, 1, 1))
        self.input_conv = nn.Conv2d(channels, widths[0], 1)
        c, skips = widths[0] + embedding_dims, []
        self.down = nn.ModuleList()
        for w in widths[:-1]:
            for _ in range(block_depth):
                self.down.append(ResidualBlock(c, w))
                c = w
                skips.append(c)
        self.mid = nn.ModuleList()
        for _ in range(block_depth):
            self.mid.append(ResidualBlock(c, widths[-1]))
            c = widths[-1]
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            for _ in range(block_depth):
                c += skips.pop()
                self.up.append(ResidualBlock(c, w))
                c = w
        self.output_conv = nn.Conv2d(c, channels, 1)
        nn.init.zeros_(self.output_conv.weight)
        nn.init.zeros_(self.output_conv.bias)

    def forward(self, noisy_images, noise_variances):
        e = torch.cat([torch.sin(self.angular_speeds * noise_variances),
                       torch.cos(self.angular_speeds * noise_variances)], dim=1)
        x = self.input_conv(noisy_images)
        x = torch.cat([x, e.expand(-1, -1, x.shape[2], x.shape[3]).to(x.dtype)], dim=1)
        skips, i = [], 0
        for _ in self.widths[:-1]:
            for _ in range(self.block_depth):
                x = self.down[i](x)
                i += 1
                skips.append(x)
            x = F.avg_pool2d(x, 2)
        for block in self.mid:
            x = block(x)
        i = 0
        for _ in self.widths[:-1]:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            for _ in range(self.block_depth):
                x = self.up[i](torch.cat([x, skips.pop()], dim=1))
                i += 1
        return self.output_conv(x)


def schedule(t, min_signal_rate=0.02, max_signal_rate=0.95):
    start, end = math.acos(max_signal_rate), math.acos(min_signal_rate)
    angles = start + t * (end - start)
    return torch.sin(angles), torch.cos(angles)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = ResidualUNet(args.channels, [32, 64, 96, 128], 2).to(memory_format=fmt)
    ema_net = ResidualUNet(args.channels, [32, 64, 96, 128], 2).to(memory_format=fmt)
    ema_net.load_state_dict(net.state_dict())
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4, eps=1e-7)
    images = torch.rand(args.batch_size, args.channels, args.image_size, args.image_size)
    images = ((images - 0.5) / 0.29).contiguous(memory_format=fmt)
    autocast = args.precision == "bf16"

    def train_step():
        noises = torch.randn_like(images)
        t = torch.rand(args.batch_size, 1, 1, 1)
        noise_rates, signal_rates = schedule(t)
        noisy = signal_rates * images + noise_rates * noises
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            pred_noises = net(noisy, noise_rates ** 2)
        pred_noises = pred_noises.float()
        pred_images = (noisy - noise_rates * pred_noises) / signal_rates
        noise_loss = (noises - pred_noises).abs().mean()
        (images - pred_images).abs().mean()
        optimizer.zero_grad()
        noise_loss.backward()
        optimizer.step()
        with torch.no_grad():
            for w, e in zip(list(net.parameters()) + list(net.buffers()),
                            list(ema_net.parameters()) + list(ema_net.buffers())):
                if e.dtype.is_floating_point:
                    e.lerp_(w, 0.001)
                else:
                    e.copy_(w)

    @torch.no_grad()
    def generate(steps):
        ema_net.eval()
        x = torch.randn_like(images)
        for step in range(steps):
            t = torch.full((args.batch_size, 1, 1, 1), 1.0 - step / steps)
            n, s = schedule(t)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                pn = ema_net(x, n ** 2)
            pn = pn.float()
            pi = (x - n * pn) / s
            nn_, ns = schedule(t - 1.0 / steps)
            x = ns * pi + nn_ * pn
        return pi

    net.train()
    for _ in range(3):
        train_step()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    train_ips = args.steps * args.batch_size / (time.perf_counter() - start)
    generate(1)
    start = time.perf_counter()
    generate(args.sample_steps)
    sample_ips = args.batch_size / (time.perf_counter() - start)
    print(f"reference: python {torch.__version__} eager {args.precision}"
          f"{' channels_last' if args.channels_last else ''}, threads {torch.get_num_threads()}")
    print(f"train_images_per_second: {train_ips:.2f}")
    print(f"sample_images_per_second: {sample_ips:.2f}")
    print(f"peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


if __name__ == "__main__":
    main()
