"""Prefect flows: the training pipeline as observable, retryable runs."""
