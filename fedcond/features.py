"""Feature maps phi: what the discrepancy sees of a batch of images.

A feature map turns a batch ``(x, y)`` of one class into features, either an embedding
``[n, d]`` or a list of per-layer parameter gradients. The condenser calls :meth:`refresh`
before every iteration (under that iteration's seed) and :meth:`update` after every step on the
synthetic images, so methods such as DM (a fresh random network per iteration) and DC (a network
trained on the synthetic set between steps) are both plain feature maps.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fedcond.device import autocast, chunk_size, compiled_function, split_pieces
from fedcond.discrepancies.base import FEATURE_KINDS, Features
from fedcond.errors import ConfigError
from fedcond.models import ImageClassifier, build_model
from fedcond.registry import Registry
from fedcond.values import NonNegative, Positive, bind_component_options, option_names

Augment = Callable[[torch.Tensor], torch.Tensor]

FEATURE_MAPS: Registry[type["FeatureMap"]] = Registry("feature map")


def register_feature_map(name: str) -> Callable[[type["FeatureMap"]], type["FeatureMap"]]:
    """Class decorator registering a :class:`FeatureMap` subclass under ``name``."""

    def decorator(cls: type[FeatureMap]) -> type[FeatureMap]:
        if getattr(cls, "kind", None) not in FEATURE_KINDS:
            raise ValueError(f"feature map {name!r} must set kind to one of {FEATURE_KINDS}")
        return FEATURE_MAPS.register(name)(cls)

    return decorator


def feature_kind(name: str) -> str:
    """``"embedding"`` or ``"gradients"``: what the feature map called ``name`` produces."""
    return FEATURE_MAPS.get(name).kind


@dataclass(frozen=True)
class FeatureContext:
    """What every feature map needs to know about the data and where to run."""

    model: str
    channels: int
    num_classes: int
    image_size: tuple[int, int]
    device: torch.device
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Embed through ``torch.compile`` (``condense.compile``): one graph per process and input shape,
    #: shared by every fresh network of the architecture.
    compile: bool = False

    def build_network(self) -> ImageClassifier:
        """A freshly initialised network (the caller seeds torch's RNG)."""
        net = build_model(
            self.model,
            channels=self.channels,
            num_classes=self.num_classes,
            image_size=self.image_size,
            **self.model_kwargs,
        )
        return net.to(self.device)

    def embed(self, net: ImageClassifier, x: torch.Tensor) -> torch.Tensor:
        """``net.embed(x)``, compiled when :attr:`compile` is set."""
        if self.compile:
            return compiled_function("embed", _embed)(net, x)
        return net.embed(x)


def _embed(net: ImageClassifier, x: torch.Tensor) -> torch.Tensor:
    return net.embed(x)


class FeatureMap(abc.ABC):
    """Base class; subclasses set ``kind`` and implement :meth:`__call__`."""

    kind: ClassVar[str]
    #: Whether :meth:`use_network` can make a given network this map's (targets of trained networks need it).
    takes_networks: ClassVar[bool] = False

    def __init__(self, context: FeatureContext) -> None:
        self.context = context

    def refresh(self) -> None:
        """Prepare for the next iteration (e.g. draw a fresh random network)."""

    def use_network(self, net: nn.Module) -> None:
        """Map through ``net`` (frozen, on the context's device) until the next :meth:`refresh` or call."""
        raise ConfigError(f"feature map {type(self).__name__} maps through its own networks, not given ones")

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> Features:
        """Features of one class's batch; a graph back to ``x`` only when ``differentiable``."""

    def update(self, images: torch.Tensor, labels: torch.Tensor, augment: Augment | None) -> None:
        """Called after each step on the synthetic set (DC trains its network here)."""

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a checkpoint (empty for stateless maps)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def _frozen(net: nn.Module) -> nn.Module:
    # Feature networks are never trained by the condenser: no parameter gradients, eval mode.
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _load_network(context: FeatureContext, weights: str | None, network: nn.Module | None) -> nn.Module:
    """A given trained network: a module passed in code, or a state dict file from a config."""
    if network is not None:
        return _frozen(network.to(context.device))
    if weights is None:
        raise ConfigError("this feature map needs a trained network: set condense.feature_params.weights=FILE")
    net = context.build_network()
    try:
        state = torch.load(weights, map_location=context.device, weights_only=True)
        net.load_state_dict(state)
    except FileNotFoundError:
        raise ConfigError(f"feature network weights not found: {weights}") from None
    except Exception as exc:  # corrupt file, wrong architecture: one line, no traceback
        raise ConfigError(f"cannot load feature network weights {weights}: {str(exc).splitlines()[0]}") from None
    return _frozen(net)


@register_feature_map("random-embedding")
class RandomEmbedding(FeatureMap):
    """DM / M3D: the embedding of a freshly initialised random network, a new one every iteration.

    A real-side target may instead make a given network active (:meth:`use_network`), e.g. one
    trained briefly on the real data (the ``trained-pool`` target).
    """

    kind = "embedding"
    takes_networks = True

    def __init__(self, context: FeatureContext) -> None:
        super().__init__(context)
        self.net: ImageClassifier | None = None

    def refresh(self) -> None:
        self.net = _frozen(self.context.build_network())

    def use_network(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        if self.net is None:
            self.refresh()
        with torch.set_grad_enabled(differentiable):
            return self.context.embed(self.net, x)


@register_feature_map("attention-embedding")
class AttentionEmbedding(RandomEmbedding):
    """DataDAM (Sajedi et al., ICCV 2023): each block's spatial attention map beside the embedding.

    Through the same networks as ``random-embedding`` (fresh random ones, or those a target gives),
    the features of an image are, for every block of the network's ``features``, its spatial
    attention map ``mean_c |a_c|^power`` over the block's activation output, flattened, scaled to
    unit norm and multiplied by ``sqrt(attention_weight)``, followed by the embedding itself. With
    ``mmd-linear`` the discrepancy is then DataDAM's loss: ``attention_weight`` times the squared
    distance of the class means of each block's normalised attention maps, plus DM's embedding
    term. Needs a network whose blocks form an ``nn.Sequential`` named ``features`` (``convnet``).

    Parameters
    ----------
    power
        The exponent ``p`` of the attention map (DataDAM uses 4).
    attention_weight
        The weight of the attention terms against the embedding's.
    """

    def __init__(
        self,
        context: FeatureContext,
        *,
        power: Annotated[float, Positive] = 4.0,
        attention_weight: Annotated[float, NonNegative] = 1.0,
    ) -> None:
        super().__init__(context)
        self.power = power
        self.attention_weight = attention_weight

    def use_network(self, net: nn.Module) -> None:
        _blocks(net)  # a network without blocks fails here, in one line
        super().use_network(net)

    def refresh(self) -> None:
        super().refresh()
        _blocks(self.net)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        if self.net is None:
            self.refresh()
        with torch.set_grad_enabled(differentiable):
            return attention_features(self.net, x, power=self.power, attention_weight=self.attention_weight)


#: The layers whose outputs end a block of a ``features`` stack (fedcond.models.layers.make_activation).
_BLOCK_ENDS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid)


def _blocks(net: nn.Module | None) -> nn.Sequential:
    blocks = getattr(net, "features", None)
    if not isinstance(blocks, nn.Sequential) or not any(isinstance(m, _BLOCK_ENDS) for m in blocks):
        raise ConfigError(
            f"attention-embedding needs a network whose blocks are an nn.Sequential 'features' (convnet); "
            f"{type(net).__name__} has none"
        )
    return blocks


def attention_features(net: nn.Module, x: torch.Tensor, *, power: float, attention_weight: float) -> torch.Tensor:
    """``[n, sum_blocks(h_b * w_b) + embed_dim]``: each block's normalised attention map, then the embedding."""
    parts = []
    h = x
    for layer in _blocks(net):
        h = layer(h)
        if isinstance(layer, _BLOCK_ENDS):
            attention = h.abs().pow(power).mean(1).flatten(1)
            parts.append(F.normalize(attention, dim=1) * attention_weight**0.5)
    parts.append(h.flatten(1))
    return torch.cat(parts, 1)


@register_feature_map("trained-embedding")
class TrainedEmbedding(FeatureMap):
    """The embedding of one given trained network (e.g. the current global model in FedDM)."""

    kind = "embedding"

    def __init__(self, context: FeatureContext, *, weights: str | None = None, network: nn.Module | None = None) -> None:
        super().__init__(context)
        self.net = _load_network(context, weights, network)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        with torch.set_grad_enabled(differentiable):
            return self.context.embed(self.net, x)


@register_feature_map("mixed-embedding")
class MixedEmbedding(FeatureMap):
    """A given trained network's embedding, or with probability ``random_fraction`` a fresh random
    network's (FedDM/FedAF-style clients: the global model's features, kept honest by random ones).

    The choice is drawn from torch's RNG in :meth:`refresh`, so it follows the iteration's seed.
    """

    kind = "embedding"

    def __init__(
        self,
        context: FeatureContext,
        *,
        random_fraction: float = 0.5,
        weights: str | None = None,
        network: nn.Module | None = None,
    ) -> None:
        super().__init__(context)
        if not 0.0 <= float(random_fraction) <= 1.0:
            raise ConfigError(f"mixed-embedding: random_fraction must be in [0, 1], got {random_fraction}")
        self.random_fraction = float(random_fraction)
        self.trained = _load_network(context, weights, network)
        self.net = self.trained

    def refresh(self) -> None:
        use_random = float(torch.rand(())) < self.random_fraction
        self.net = _frozen(self.context.build_network()) if use_random else self.trained

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        with torch.set_grad_enabled(differentiable):
            return self.context.embed(self.net, x)


@register_feature_map("logits")
class Logits(FeatureMap):
    """The logits of a network: a given trained one, or a fresh random one every iteration."""

    kind = "embedding"

    def __init__(self, context: FeatureContext, *, weights: str | None = None, network: nn.Module | None = None) -> None:
        super().__init__(context)
        self.fixed = weights is not None or network is not None
        self.net = _load_network(context, weights, network) if self.fixed else None

    def refresh(self) -> None:
        if not self.fixed:
            self.net = _frozen(self.context.build_network())

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        if self.net is None:
            self.refresh()
        with torch.set_grad_enabled(differentiable):
            return self.net(x)


@register_feature_map("pixels")
class Pixels(FeatureMap):
    """The flattened images themselves: matching in input space, no network."""

    kind = "embedding"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        return x.flatten(1)


@register_feature_map("gradients")
class Gradients(FeatureMap):
    """DC / DSA: per-class loss gradients w.r.t. the parameters of a network being trained.

    A fresh network is drawn every ``outer_loop`` iterations; between iterations it is trained on
    the current synthetic set for ``inner_steps`` SGD steps, so the synthetic set is matched along
    the network's training trajectory.
    """

    kind = "gradients"

    def __init__(
        self,
        context: FeatureContext,
        *,
        outer_loop: int = 10,
        inner_steps: int = 50,
        lr_net: float = 0.01,
        batch_train: int = 256,
    ) -> None:
        super().__init__(context)
        if outer_loop < 1 or inner_steps < 0 or lr_net <= 0 or batch_train < 1:
            raise ConfigError("gradients feature map: outer_loop >= 1, inner_steps >= 0, lr_net > 0, batch_train >= 1")
        self.outer_loop, self.inner_steps, self.lr_net, self.batch_train = outer_loop, inner_steps, lr_net, batch_train
        self.calls = 0
        self.net: ImageClassifier | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def refresh(self) -> None:
        if self.net is None or self.calls % self.outer_loop == 0:
            self.net = self.context.build_network()
            self.net.train()
            self.optimizer = torch.optim.SGD(self.net.parameters(), lr=self.lr_net)
        self.calls += 1

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, differentiable: bool) -> list[torch.Tensor]:
        if self.net is None:
            self.refresh()
        params = [p for p in self.net.parameters() if p.requires_grad]
        loss = F.cross_entropy(self.net(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=differentiable)
        return list(grads) if differentiable else [g.detach() for g in grads]

    def update(self, images: torch.Tensor, labels: torch.Tensor, augment: Augment | None) -> None:
        if self.calls % self.outer_loop == 0:
            return  # the network is replaced before the next iteration: training it is wasted work
        images, labels = images.detach(), labels.detach()
        for _ in range(self.inner_steps):
            idx = torch.randperm(len(images), device=images.device)[: self.batch_train]
            x = images[idx] if augment is None else augment(images[idx])
            loss = F.cross_entropy(self.net(x), labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        if self.net is None:
            return {"calls": self.calls}
        return {"calls": self.calls, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])
        if "net" in state:
            self.net = self.context.build_network()
            self.net.train()
            self.net.load_state_dict(state["net"])
            self.optimizer = torch.optim.SGD(self.net.parameters(), lr=self.lr_net)
            self.optimizer.load_state_dict(state["optimizer"])


def embed_in_chunks(
    feature_map: FeatureMap,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    device: torch.device | None = None,
    differentiable: bool = False,
) -> torch.Tensor:
    """Features ``[N, D]`` of many images, a device-sized chunk at a time (on ``device`` if given).

    Embedding maps treat every sample on its own, so chunking changes nothing but speed and memory
    (see :func:`fedcond.device.chunk_size`); with ``differentiable`` the chunks keep their graphs.
    On CUDA the network runs under bf16 autocast (:func:`fedcond.device.autocast`).
    """
    target = device if device is not None else images.device
    size = chunk_size(target)
    pieces = split_pieces(images, labels, size, equal=feature_map.context.compile)
    parts = []
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        for x, y in zip(*pieces):
            # The network may run in bf16 on a GPU; discrepancies always see fp32 features.
            with autocast(target):
                features = feature_map(x.to(target), y.to(target), differentiable=differentiable)
            parts.append(features.flatten(1).float())
    return torch.cat(parts)


def check_feature_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of feature map ``name`` checked against its signature and annotations, coerced.

    ``network`` (a trained module given in code, such as a Flower client's global model) is
    accepted as it is where the map takes one; in a config file it is not a valid value.
    """
    cls = FEATURE_MAPS.get(name)
    accepted = [n for n in option_names(cls, keyword_only=True) if n != "network"]
    if "network" in params and not (isinstance(params["network"], nn.Module) and "network" in option_names(cls)):
        raise ConfigError(f"feature map {name!r} has no parameter 'network'; valid: {', '.join(accepted) or 'none'}")
    return bind_component_options("feature map", name, cls, params, keyword_only=True, passthrough=("network",))


def build_feature_map(name: str, context: FeatureContext, **params: Any) -> FeatureMap:
    """Instantiate the feature map ``name``; unknown params raise :class:`ConfigError`.

    ``network=`` (a trained module, for code rather than configs) is accepted where the map takes one.
    """
    options = check_feature_params(name, params)
    try:
        return FEATURE_MAPS.get(name)(context, **options)
    except TypeError as exc:
        raise ConfigError(f"feature map {name!r}: {exc}") from None
