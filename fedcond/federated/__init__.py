"""Flower side of fedcond: partitions, the ClientApp, the ServerApp, byte metering, the simulation runner.

The condenser knows nothing of Flower; these modules adapt it. Server strategies live in the
top-level ``strategies`` package.
"""
