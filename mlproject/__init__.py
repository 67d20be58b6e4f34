"""A reproducible text-generation pipeline.

One module per stage (scrape, validate, tokens, train, evaluate, registry, generate), each a set of
plain functions over paths and typed config; the command line in `cli.py` is the only entry point.
"""
