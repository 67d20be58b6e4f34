"""Serving people directly: the web page of `mlproject serve`."""
