"""Searching for the best model: a sweep file (sweeps/<name>.yaml) names what to vary and how to
search; each trial is a pipeline run with its own overrides in a workspace of its own, tracked as an
MLflow child run of the sweep's run; an Optuna study decides the next trial, prunes the hopeless and
keeps the sweep's memory, so a killed sweep resumes; the best trial goes through the promotion gate.
"""
