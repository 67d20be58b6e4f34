"""A reproducible text-generation pipeline.

`cli.py` is the `mlproject` command; `stages/` holds one thin module per pipeline stage; `data/`
the corpus side (scrape, validate, tokenize); `models/` the language-model interface and one
package per model kind; `tracking/` MLflow registration, promotion and the pyfunc.
"""
