#!/usr/bin/python3
"""Golden references for difflab's FID and precision/recall/density/coverage (tests/training/fid_test.cpp).

Writes feature sets as raw float64 files (row-major) into OUT_DIR with one line per case in
OUT_DIR/cases.txt:
  name rows_a rows_b dims fid scipy_offset precision recall density coverage near_ties
- fid: clean-fid's and pytorch-fid's formula, |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrtm(S1 S2).real,
  with scipy.linalg.sqrtm (Debian's python3-scipy); scipy_offset 1 when sqrtm was not finite and,
  as clean-fid does, 1e-6 I was added to both covariances.
- precision, recall (k = 3) and density, coverage (k = 5): Kynkaanniemi et al. 2019 and Naeem et
  al. 2020 written out here with numpy, distances by scipy.spatial.distance.cdist (each one as
  sqrt(sum((x - y)^2)), not the expansion difflab uses); near_ties counts comparisons whose two
  sides are within 1e-9 (relative) of each other, where rounding could flip the answer.
Cases: random Gaussian features of 16 to 2048 dimensions, nearly singular ones (low rank plus a
little noise), fewer samples than dimensions, real Fashion-MNIST pixels (the images of the
train and the test split, 28x28 = 784 dimensions, with near-constant border pixels).
"""
import gzip
import sys

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

PR_K, DC_K = 3, 5


def fid(a, b):
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    offset = 0
    if not np.isfinite(covmean).all():
        eye = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eye).dot(s2 + eye))
        offset = 1
    covmean = covmean.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean), offset


def radii(x, k):
    d = cdist(x, x)
    return np.partition(d, k, axis=1)[:, k]  # the k-th nearest other point (the 0th is itself)


def prdc(real, fake):
    ties = 0

    def near(d, r):
        return int(np.sum(np.abs(d - r) <= 1e-9 * np.maximum(np.abs(r), 1e-300)))

    real_pr, fake_pr, real_dc = radii(real, PR_K), radii(fake, PR_K), radii(real, DC_K)
    d = cdist(real, fake)  # [N, M]
    ties += near(d, real_pr[:, None]) + near(d, fake_pr[None, :]) + near(d, real_dc[:, None])
    precision = np.mean(np.any(d < real_pr[:, None], axis=0))
    recall = np.mean(np.any(d < fake_pr[None, :], axis=1))
    density = np.sum(d < real_dc[:, None]) / (DC_K * fake.shape[0])
    ties += near(d.min(axis=1), real_dc)
    coverage = np.mean(d.min(axis=1) < real_dc)
    return precision, recall, density, coverage, ties


def fashion(path, count):
    with gzip.open(path) as f:
        data = np.frombuffer(f.read(), np.uint8, offset=16)
    return data.reshape(-1, 784)[:count].astype(np.float64) / 255.0


def main(out):
    rng = np.random.default_rng(31)
    cases = []

    def gaussian(n, d, shift, scale):
        a = rng.standard_normal((d, d)) / np.sqrt(d)
        return rng.standard_normal((n, d)) @ (np.eye(d) * scale + 0.5 * a) + shift

    for d, n in ((16, 300), (64, 500), (256, 900), (2048, 2100)):
        cases.append((f"gaussian-{d}", gaussian(n, d, 0.0, 1.0), gaussian(n + 37, d, 0.3, 1.2)))
    for d, rank in ((128, 20), (512, 60)):  # nearly singular: low rank plus noise of 1e-6
        basis = rng.standard_normal((rank, d))
        a = rng.standard_normal((700, rank)) @ basis + 1e-6 * rng.standard_normal((700, d))
        b = rng.standard_normal((650, rank)) @ basis * 1.1 + 0.2 + 1e-6 * rng.standard_normal((650, d))
        cases.append((f"low-rank-{d}", a, b))
    cases.append(("fewer-samples-512", gaussian(200, 512, 0.0, 1.0), gaussian(180, 512, 0.1, 1.0)))
    root = "/usr/share/datasets/fashion-mnist/"
    cases.append(("fashion-mnist-pixels-784", fashion(root + "train-images-idx3-ubyte.gz", 3000),
                  fashion(root + "t10k-images-idx3-ubyte.gz", 2500)))
    with open(f"{out}/cases.txt", "w") as listing:
        for name, a, b in cases:
            a.astype(np.float64).tofile(f"{out}/{name}-a.f64")
            b.astype(np.float64).tofile(f"{out}/{name}-b.f64")
            value, offset = fid(a, b)
            small = a.shape[1] <= 784
            p, r, dn, c, ties = prdc(a, b) if small else (float("nan"),) * 4 + (0,)
            listing.write(f"{name} {a.shape[0]} {b.shape[0]} {a.shape[1]} {value!r} {offset} "
                          f"{p!r} {r!r} {dn!r} {c!r} {ties}\n")


if __name__ == "__main__":
    main(sys.argv[1])
