#!/usr/bin/env python3
"""Optuna 3.1's TPE, the golden reference of difflab's (tests/sweep/tpe_test.cpp).

usage: tpe_golden.py estimators CASES.txt   the split, both Parzen estimators and log l, log g at
                                            given candidates, for each case
       tpe_golden.py optimize SPEC.txt      best-so-far of Optuna's TPESampler on analytic
                                            objectives, one line per seed

Two changes to Optuna 3.1, both what difflab does and says (framework/src/strategy/samplers/tpe.h):
- _truncnorm.logpdf gets the -log(scale) it lacks (optuna/optuna#5109, fixed in Optuna 3.5 by
  #5110): without it the continuous components' densities do not integrate to 1;
- the bandwidths' sort is numpy's stable one, so that tied observations are ordered by trial as
  difflab orders them (numpy's default sort leaves the order of ties unspecified above 16
  elements, which changes the mixture once the weights ramp, past 25 observations).

CASES.txt, one block a case (values in the axes' own terms, a choice as its index):
    case ID minimize|maximize MULTIVARIATE(0|1) N_AXES
    axis uniform|log_uniform|int_uniform|choice LOW HIGH CHOICES     (N_AXES lines)
    obs complete|pruned|running STEP VALUE V1 .. VN                  (in trial order)
    cand V1 .. VN                                                    (the candidates)
    end
Output, per case and per estimator pair (univariate: one pair an axis, "pair A"):
    case ID / split BELOW... | ABOVE... / pair A / (below|above) weights ... /
    (below|above) mus A ... / sigmas A ... / choices A ... / logl ... / logg ...
"""
import math
import sys
import warnings

import numpy as np
import optuna
from optuna import distributions
from optuna.samplers._tpe import _truncnorm
from optuna.samplers._tpe import parzen_estimator as pe
from optuna.samplers._tpe import sampler as tpe_sampler

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore")

_logpdf_31 = _truncnorm.logpdf


def _logpdf_fixed(x, a, b, loc=0, scale=1):
    return _logpdf_31(x, a, b, loc=loc, scale=scale) - np.log(scale)


_truncnorm.logpdf = _logpdf_fixed


class _StableNumpy:
    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def argsort(a, *args, **kwargs):
        kwargs.setdefault("kind", "stable")
        return np.argsort(a, *args, **kwargs)


pe.np = _StableNumpy()


def distribution(kind, low, high, choices):
    if kind == "uniform":
        return distributions.FloatDistribution(low, high)
    if kind == "log_uniform":
        return distributions.FloatDistribution(low, high, log=True)
    if kind == "int_uniform":
        return distributions.IntDistribution(int(low), int(high))
    return distributions.CategoricalDistribution(list(range(choices)))


def number(v):
    return "nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else repr(float(v))))


def parameters(multivariate):
    return pe._ParzenEstimatorParameters(True, 1.0, True, False, tpe_sampler.default_weights, multivariate)


def external(dist, v):
    if isinstance(dist, distributions.IntDistribution):
        return int(round(v))
    if isinstance(dist, distributions.CategoricalDistribution):
        return int(round(v))
    return float(v)


def run_case(lines, out):
    head = lines[0].split()
    case_id, direction, multivariate, n_axes = head[1], head[2], head[3] == "1", int(head[4])
    space = {}
    for i in range(n_axes):
        _, kind, low, high, choices = lines[1 + i].split()
        space[f"x{i}"] = distribution(kind, float(low), float(high), int(choices))
    names = list(space)
    study = optuna.create_study(direction=direction)
    candidates = []
    for line in lines[1 + n_axes:]:
        parts = line.split()
        if parts[0] == "cand":
            candidates.append([float(v) for v in parts[1:]])
            continue
        state, step, value = parts[1], int(parts[2]), float(parts[3])
        params = {n: external(space[n], float(v)) for n, v in zip(names, parts[4:])}
        if state == "complete":
            trial = optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=value,
                                              params=params, distributions=space)
        elif state == "pruned":
            trial = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params=params,
                                              distributions=space,
                                              intermediate_values={step: value} if step > 0 else {})
        else:
            trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                              distributions=space)
        study.add_trial(trial)
    values, scores, _ = tpe_sampler._get_observation_pairs(study, names, True, False)
    n = sum(s < float("inf") for s, v in scores)
    below_idx, above_idx = tpe_sampler._split_observation_pairs(scores, tpe_sampler.default_gamma(n), None)
    out.append(f"case {case_id}")
    out.append("split " + " ".join(map(str, below_idx)) + " | " + " ".join(map(str, above_idx)))
    groups = [names] if multivariate else [[n] for n in names]
    for g, group in enumerate(groups):
        sub = {n: space[n] for n in group}
        config = {n: np.asarray(values[n], dtype=float) for n in group}
        below = {n: v[below_idx] for n, v in config.items()}
        above = {n: v[above_idx] for n, v in config.items()}
        estimators = {"below": pe._ParzenEstimator(below, sub, parameters(multivariate)),
                      "above": pe._ParzenEstimator(above, sub, parameters(multivariate))}
        out.append(f"pair {g}")
        for side, est in estimators.items():
            out.append(f"{side} weights " + " ".join(map(number, est._weights)))
            for a, n in enumerate(group):
                if est._mus[n] is not None:
                    out.append(f"{side} mus {a} " + " ".join(map(number, est._mus[n])))
                    out.append(f"{side} sigmas {a} " + " ".join(map(number, est._sigmas[n])))
                else:
                    out.append(f"{side} choices {a} " + " ".join(map(number, est._categorical_weights[n].ravel())))
        column = {n: names.index(n) for n in group}
        samples = {n: np.asarray([external(space[n], c[column[n]]) for c in candidates]) for n in group}
        out.append("logl " + " ".join(map(number, estimators["below"].log_pdf(samples))))
        out.append("logg " + " ".join(map(number, estimators["above"].log_pdf(samples))))


def estimators(path):
    out, block = [], []
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        if line == "end":
            run_case(block, out)
            block = []
        else:
            block.append(line)
    print("\n".join(out))


# ---- analytic objectives -------------------------------------------------------------------
def branin(x):  # minimum 0.397887 at (-π, 12.275), (π, 2.275), (9.42478, 2.475)
    a, b, c, r, s, t = 1, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
    return a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * math.cos(x[0]) + s


HARTMANN4_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
HARTMANN4_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
               [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann4(x):  # Picheny et al. 2013's 4-D Hartmann, on the first four coordinates
    total = 0.0
    for i in range(4):
        inner = sum(HARTMANN4_A[i][j] * (x[j] - 1e-4 * HARTMANN4_P[i][j]) ** 2 for j in range(4))
        total += HARTMANN_ALPHA[i] * math.exp(-inner)
    return (1.1 - total) / 0.839


def mixed(x):  # a choice of three offsets, a log-uniform rate, an integer width
    offsets = [0.0, 0.6, 1.5]
    return offsets[int(x[0])] + (math.log10(x[1]) + 3.0) ** 2 + 0.05 * (x[2] - 7) ** 2


OBJECTIVES = {
    "branin": (branin, [("uniform", -5, 10, 0), ("uniform", 0, 15, 0)]),
    "hartmann4": (hartmann4, [("uniform", 0, 1, 0)] * 4),
    "mixed": (mixed, [("choice", 0, 0, 3), ("log_uniform", 1e-5, 1e-1, 0), ("int_uniform", 1, 16, 0)]),
}


def optimize(path):
    # SPEC: "NAME SEEDS TRIALS MULTIVARIATE" lines -> "NAME SEED best-so-far after each trial".
    for line in open(path):
        parts = line.split()
        if not parts:
            continue
        name, seeds, trials, multivariate = parts[0], int(parts[1]), int(parts[2]), parts[3] == "1"
        function, axes = OBJECTIVES[name]
        space = {f"x{i}": distribution(*axis) for i, axis in enumerate(axes)}
        for seed in range(seeds):
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=multivariate)
            study = optuna.create_study(sampler=sampler)

            def objective(trial):
                return function([trial._suggest(n, d) for n, d in space.items()])

            study.optimize(objective, n_trials=trials)
            best, curve = math.inf, []
            for t in study.trials:
                best = min(best, t.value)
                curve.append(number(best))
            print(name, seed, " ".join(curve))


if __name__ == "__main__":
    {"estimators": estimators, "optimize": optimize}[sys.argv[1]](sys.argv[2])
