"""Benchmarks (not tests): throughput numbers recorded in BENCHMARKS.md with the command and machine."""
