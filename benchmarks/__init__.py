"""Benchmarks: throughput, overhead, quality for time and memory, measured side by side."""
