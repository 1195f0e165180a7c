"""Flower server strategies that consume synthetic sets (FedCondense and its relatives)."""
