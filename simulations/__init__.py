"""Runnable benchmarks and simulations; each writes results.json."""
