#!/usr/bin/env python3
"""Replays report sequences through Optuna's own pruners: the golden reference of difflab's
pruning rules (tests/sweep/pruning_test.cpp).

usage: optuna_golden.py SCENARIOS.json   -> one JSON list of decisions per scenario on stdout

A scenario: {"pruner": "successive_halving" | "median", "direction": "minimize" | "maximize",
"min_resource": r, "reduction_factor": eta, "min_early_stopping_rate": s, "startup_trials": n,
"warmup_steps": w, "events": [[trial, step, value], ...]}, in the order they happen; step -1
completes the trial with that value. The decision of each report is 1 (prune) or 0 (go on); a
report for a trial Optuna pruned already is "x".
"""
import json
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)


def pruner_of(scenario):
    if scenario["pruner"] == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=scenario["min_resource"], reduction_factor=scenario["reduction_factor"],
            min_early_stopping_rate=scenario["min_early_stopping_rate"])
    return optuna.pruners.MedianPruner(n_startup_trials=scenario["startup_trials"],
                                       n_warmup_steps=scenario["warmup_steps"], interval_steps=1)


def replay(scenario):
    study = optuna.create_study(direction=scenario["direction"], pruner=pruner_of(scenario))
    trials, told, decisions = {}, set(), []
    for trial_number, step, value in scenario["events"]:
        if trial_number not in trials:
            trials[trial_number] = study.ask()
        trial = trials[trial_number]
        if trial_number in told:
            if step >= 0:
                decisions.append("x")
            continue
        if step < 0:
            study.tell(trial, value)
            told.add(trial_number)
            continue
        trial.report(value, step)
        pruned = trial.should_prune()
        decisions.append(1 if pruned else 0)
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            told.add(trial_number)
    return decisions


print(json.dumps([replay(scenario) for scenario in json.load(open(sys.argv[1]))]))
