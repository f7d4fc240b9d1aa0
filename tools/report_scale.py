#!/usr/bin/env python3
"""How `difflab report` scales: a results database of RUNS runs x EPOCHS epochs, rendered.

Trains one tiny real run (synthetic data) for a database with difflab's own schema, clones it
RUNS times with python's sqlite3 (250 variants x 2 seeds: loss, learning rate, min signal rate),
each with EPOCHS epochs of losses and KID and a sample grid per epoch (the real run's PNGs, 4 x 8
images of 96 x 96 pixels, as the seed's grids are), then
times `difflab report` in both image modes and prints the seconds, the file sizes and the peak
memory. Usage: tools/report_scale.py [BUILD_DIR] [--runs N] [--epochs N]
"""
import argparse
import math
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("build", nargs="?", default="build")
parser.add_argument("--runs", type=int, default=500)
parser.add_argument("--epochs", type=int, default=100)
args = parser.parse_args()
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
difflab = os.path.join(os.path.abspath(args.build), "bin", "difflab")
work = tempfile.mkdtemp(prefix="difflab-report-scale-")
database = os.path.join(work, "scale.sqlite")
subprocess.run([difflab, "run", os.path.join(root, "tests/data/tiny_synthetic.toml"), "--set",
                f"experiment.database={database}", "--set", f"experiment.output_dir={work}/runs", "--set",
                "training.epochs=4", "--set", "evaluation.grid_rows=4", "--set", "evaluation.grid_cols=8", "--set",
                "evaluation.grid_scale=6"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

db = sqlite3.connect(database)
columns = [row[1] for row in db.execute("PRAGMA table_info(runs)") if row[1] not in ("id", "attempt")]
template = dict(zip(columns, db.execute(f"SELECT {', '.join(columns)} FROM runs WHERE id = 1").fetchone()))
params = db.execute("SELECT key, value, number, type FROM params WHERE run_id = 1").fetchall()
grids = [row[0] for row in db.execute("SELECT path FROM artifacts WHERE run_id = 1 AND kind = 'sample_grid'")]
db.execute("DELETE FROM runs")
random.seed(0)
losses, rates, signals = ["mae", "mse"], [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], [0.01, 0.02, 0.05]
with db:
    for run in range(args.runs):
        variant = run // 2
        values = {"loss.plugin": f'"{losses[variant % 2]}"', "training.learning_rate": rates[(variant // 2) % 5],
                  "schedule.min_signal_rate": signals[(variant // 10) % 3], "experiment.seed": run % 2,
                  "training.epochs": args.epochs, "training.weight_decay": 1e-4 * (1 + variant // 30)}
        row = dict(template, config_hash=f"{run:016x}", variant_hash=f"{variant:016x}")
        cursor = db.execute(f"INSERT INTO runs ({', '.join(row)}, attempt) VALUES ({', '.join('?' * len(row))}, "
                            "lower(hex(randomblob(16))))", list(row.values()))
        run_id = cursor.lastrowid
        for key, value, number, kind in params:
            if key in values:
                value = str(values[key])
                number = float(values[key]) if kind in ("integer", "float") else None
            db.execute("INSERT INTO params VALUES (?, ?, ?, ?, ?)", (run_id, key, value, number, kind))
        level = 0.1 + 0.05 * (variant % 7) + 0.01 * (run % 2)
        for epoch in range(1, args.epochs + 1):
            decay = level + 0.8 * math.exp(-epoch / 20)
            metrics = {"loss": decay, "n_loss": decay, "i_loss": 3 * decay, "val_n_loss": decay * 1.02,
                       "val_i_loss": 3.1 * decay, "val_kid": decay / 3 + random.random() * 0.01}
            db.executemany("INSERT INTO metrics (run_id, key, epoch, step, value) VALUES (?, ?, ?, ?, ?)",
                           [(run_id, key, epoch, epoch * 100, value) for key, value in metrics.items()])
            db.execute("INSERT INTO kid (run_id, epoch, mean, std, protocol, features, sampler, diffusion_steps, "
                       "real_count, generated_count, nfe) VALUES (?, ?, ?, 0, 'per_batch', 'pixels', 'ddim', 5, 64, "
                       "64, 5)", (run_id, epoch, metrics["val_kid"]))
            db.execute("INSERT INTO artifacts (run_id, kind, path, epoch) VALUES (?, 'sample_grid', ?, ?)",
                       (run_id, grids[epoch % len(grids)], epoch))
db.close()

print(f"database: {args.runs} runs x {args.epochs} epochs, {os.path.getsize(database) / 1e6:.1f} MB")
for mode in ("--embed-images", "--link-images"):
    out = os.path.join(work, f"report{mode}.html")
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([difflab, "report", database, "--out", out, mode], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"report {mode}: {seconds:.2f} s, {os.path.getsize(out) / 1e6:.2f} MB, peak RSS {max(peak, before) / 1024:.0f} MB")
if os.environ.get("KEEP"): print(work)
else: shutil.rmtree(work)
