#!/usr/bin/env python3
"""Exports the standard FID InceptionV3 (pool3, 2048 features) to TorchScript for difflab's
`torchscript` feature plugin. Run it on a machine with internet access, then copy the file over:

    pip install torch pytorch-fid
    python3 tools/export_inception.py --output inception_fid.pt --input-size 75

Then, in an experiment:

    [features]
    plugin = "torchscript"
    model = "inception_fid.pt"
    input_size = 75          # the seed's kid_image_size (299 for the usual FID/KID setting)
    input_range = "-1_1"     # the FID Inception expects [-1, 1] (normalize_input=False below)

The weights are pytorch-fid's port of the TensorFlow FID Inception (pt_inception-2015-12-05),
the network clean-fid and torch-fidelity also use; they are downloaded by pytorch-fid itself.
difflab never downloads anything at run time.
"""
import argparse

import torch
from pytorch_fid.inception import InceptionV3


class PooledInception(torch.nn.Module):
    """[N, 3, S, S] in [-1, 1] -> [N, 2048] pool3 features."""

    def __init__(self):
        super().__init__()
        block = InceptionV3.BLOCK_INDEX_BY_DIM[2048]
        self.inception = InceptionV3([block], resize_input=False, normalize_input=False)

    def forward(self, images):
        return self.inception(images)[0].flatten(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="inception_fid.pt")
    parser.add_argument("--input-size", type=int, default=75, help="side used for tracing (>= 75)")
    args = parser.parse_args()
    model = PooledInception().eval()
    example = torch.zeros(2, 3, args.input_size, args.input_size)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        features = traced(example)
    traced.save(args.output)
    print(f"wrote {args.output}: [N, 3, {args.input_size}, {args.input_size}] -> {list(features.shape[1:])}")


if __name__ == "__main__":
    main()
