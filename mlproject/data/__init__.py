"""The corpus side: scrape (with fetch, extract, text), validate, tokenize.

Each stage's module is imported alone, so a stage's DVC deps name only its own files here.
"""
