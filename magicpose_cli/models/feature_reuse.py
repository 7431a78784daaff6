"""Reusing the deep features of the UNet and the ControlNet between adjacent denoising steps.

DeepCache (Ma et al., CVPR 2024): between two neighbouring steps the blocks below a UNet's top
resolution level change little, while the top level carries the detail. Every ``interval`` steps
a network runs whole and its deep blocks' outputs are kept; on the steps between, only the top
level runs (the first down block, the last up block and the convolutions around them) and each deep
block gives its kept output instead of computing. The ControlNet's deep residuals feed only the
UNet's deep blocks, so on those steps its deep blocks are skipped the same way.

The blocks are swapped for stand-ins (:class:`ReusedBlock`) for the length of a batch and put
back afterwards; no UNet code is forked. What is kept lives in a :class:`DeepFeatureCache`, one per
batch, which the sampling loop passes along, keyed by a stream (a guidance branch), so the
branches never mix their features. With a motion module the whole video moves step by step, so
the cache would hold every context window's deep features at once: the pipeline refuses that.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from torch import nn


class DeepFeatureCache:
    """The deep blocks' outputs per stream, and the step at which each stream last computed them.

    A stream computes its deep blocks at its first step and then every ``interval`` steps (1: at
    every step, nothing kept); a stream that was not run for a while (e.g. the unconditional
    branch outside the guidance interval) computes again at its next step if its features are older.
    """

    def __init__(self, interval: int = 1):
        if interval < 1:
            raise ValueError(f"the deep-feature reuse interval must be at least 1, got {interval}")
        self.interval = interval
        self.outputs: dict[tuple[Hashable, str], object] = {}
        self.computed_at: dict[Hashable, int] = {}
        self._active: tuple[Hashable, bool] | None = None

    @property
    def reuses(self) -> bool:
        return self.interval > 1

    def computes(self, stream: Hashable, step_index: int) -> bool:
        """Whether ``stream`` runs its deep blocks at ``step_index``."""
        last = self.computed_at.get(stream)
        return last is None or step_index - last >= self.interval

    @contextmanager
    def stream(self, key: Hashable, step_index: int) -> Iterator[None]:
        """The network calls inside are stream ``key``'s at ``step_index``."""
        computes = self.computes(key, step_index)
        if computes and self.reuses:
            self.computed_at[key] = step_index
        self._active = (key, computes)
        try:
            yield
        finally:
            self._active = None

    def block_output(self, name: str, block: nn.Module, args: tuple, kwargs: dict):
        """``block``'s output: computed (and kept) on a computing step, else the kept one."""
        if self._active is None or not self.reuses:
            return block(*args, **kwargs)
        stream, computes = self._active
        if computes:
            self.outputs[(stream, name)] = output = block(*args, **kwargs)
            return output
        return self.outputs[(stream, name)]


class ReusedBlock(nn.Module):
    """Stands in for one deep block while a cache is installed: runs it, or gives its kept output.

    Everything else the network reads from its block (``has_cross_attention``, ``resnets``, ...)
    is the block's own.
    """

    def __init__(self, block: nn.Module, cache: DeepFeatureCache, name: str):
        super().__init__()
        self.block = block
        self.cache, self.name = cache, name

    def forward(self, *args, **kwargs):
        return self.cache.block_output(self.name, self.block, args, kwargs)

    def __getattr__(self, attribute: str):
        try:
            return super().__getattr__(attribute)
        except AttributeError:
            return getattr(self._modules["block"], attribute)


def deep_block_names(network: nn.Module) -> list[str]:
    """The blocks below the top resolution level: every down block but the first, the mid block and,
    for a UNet, every up block but the last (a ControlNet has none)."""
    names = [f"down_blocks.{index}" for index in range(1, len(network.down_blocks))] + ["mid_block"]
    up_blocks = getattr(network, "up_blocks", None)
    if up_blocks is not None:
        names += [f"up_blocks.{index}" for index in range(len(up_blocks) - 1)]
    return names


def _swap(network: nn.Module, name: str, replace: Callable[[nn.Module], nn.Module]) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, replace(getattr(parent, child)))


@contextmanager
def reused_deep_features(cache: DeepFeatureCache, *networks: nn.Module) -> Iterator[None]:
    """``networks`` (the UNet, the ControlNet) with their deep blocks served by ``cache`` for the
    duration; nothing is swapped when the cache reuses nothing."""
    swapped: list[tuple[nn.Module, str]] = []
    try:
        if cache.reuses:
            for index, network in enumerate(networks):
                for name in deep_block_names(network):
                    _swap(network, name, lambda block, key=f"{index}.{name}": ReusedBlock(block, cache, key))
                    swapped.append((network, name))
        yield
    finally:
        for network, name in swapped:
            _swap(network, name, lambda stand_in: stand_in.block)
