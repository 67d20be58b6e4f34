"""Prefect tasks: one per pipeline stage, each running the stage through DVC."""
