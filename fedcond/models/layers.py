"""Named building blocks shared by the networks, chosen by config strings."""

from __future__ import annotations

from torch import nn

from fedcond.errors import ConfigError

NORMS = ("instancenorm", "batchnorm", "none")
ACTIVATIONS = ("relu", "leakyrelu", "sigmoid")
POOLINGS = ("avgpool", "maxpool", "none")


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a :class:`ConfigError` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"model option {option} must be one of {', '.join(choices)}; got {value!r}")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps (identity for ``"none"``).

    Instance norm is a GroupNorm with one channel per group, as in the DC/DSA/DM reference code:
    unlike ``nn.InstanceNorm2d`` it has a learnable affine transform by default, and unlike batch
    norm it keeps each sample's output independent of the rest of the batch.
    """
    check_choice("norm", kind, NORMS)
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    return nn.Identity()


def make_activation(kind: str) -> nn.Module:
    check_choice("activation", kind, ACTIVATIONS)
    if kind == "relu":
        return nn.ReLU()
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.01)
    return nn.Sigmoid()


def make_pooling(kind: str) -> nn.Module | None:
    """A 2x2 stride-2 pooling layer, or None for ``"none"``."""
    check_choice("pooling", kind, POOLINGS)
    if kind == "avgpool":
        return nn.AvgPool2d(kernel_size=2, stride=2)
    if kind == "maxpool":
        return nn.MaxPool2d(kernel_size=2, stride=2)
    return None
