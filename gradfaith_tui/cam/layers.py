"""The target layer for Grad-CAM, found per architecture (or named by the user), and the ViT token reshape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from gradfaith_tui.errors import GradfaithError


@dataclass(frozen=True)
class TargetLayer:
    name: str  # dotted path inside the timm net
    module: nn.Module
    reshape: Callable[[torch.Tensor], torch.Tensor] | None


def vit_reshape(num_prefix_tokens: int, grid: tuple[int, int]):
    """Tokens (B, N, C) -> (B, C, h, w), dropping the class/register tokens timm puts first."""

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        x = tokens[:, num_prefix_tokens:, :]
        return x.reshape(x.shape[0], grid[0], grid[1], x.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def default_layer_name(net: nn.Module) -> str:
    """ResNet layer4[-1], DenseNet features.norm5, EfficientNet bn2, ViT blocks[-1].norm1; else timm's last feature stage."""
    if hasattr(net, "blocks") and hasattr(net, "patch_embed"):
        return f"blocks.{len(net.blocks) - 1}.norm1"
    if hasattr(net, "layer4"):
        return f"layer4.{len(net.layer4) - 1}"
    if hasattr(net, "features") and hasattr(net.features, "norm5"):
        return "features.norm5"
    if hasattr(net, "bn2") and hasattr(net, "conv_head"):
        return "bn2"
    info = getattr(net, "feature_info", None)
    if info:
        return info[-1]["module"]
    raise GradfaithError(f"no default CAM target layer for {type(net).__name__}; pass --target-layer")


def find(net: nn.Module, name: str | None = None) -> TargetLayer:
    name = name or default_layer_name(net)
    try:
        module = net.get_submodule(name)
    except AttributeError:
        raise GradfaithError(f"--target-layer: '{name}' is not a module of {type(net).__name__}") from None
    reshape = None
    if hasattr(net, "patch_embed") and name.startswith("blocks"):
        reshape = vit_reshape(getattr(net, "num_prefix_tokens", 1), tuple(net.patch_embed.grid_size))
    elif getattr(net, "output_fmt", "NCHW") == "NHWC" and not isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
        reshape = nhwc_to_nchw  # Swin and kin keep (B, H, W, C) between stages; only their convolutions are NCHW
    return TargetLayer(name, module, reshape)


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x  # anything else is refused by check_spatial


def check_spatial(model: nn.Module, net: nn.Module, layer: TargetLayer, x: torch.Tensor) -> None:
    """One plain forward of x (one image is enough) with a hook on the layer: Grad-CAM needs a spatial map
    there, (B, C, h, w), or ViT tokens that reshape to one. A classifier head, a pooling layer or any other
    module whose output is not such a map is one line naming --target-layer, before any CAM engine runs
    (which would fail on the shape deep inside: an IndexError, or the library's 'Invalid grads shape')."""
    seen: list = []
    handle = layer.module.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    out = seen[0] if seen else None
    if isinstance(out, torch.Tensor):
        what = f"a {tuple(out.shape)}"
        try:
            if (layer.reshape(out) if layer.reshape is not None else out).ndim == 4:
                return
        except (RuntimeError, IndexError, ValueError):  # tokens that do not make the patch grid
            pass
    elif out is None:
        what = "no"  # the forward never runs it
    else:
        what = f"a {type(out).__name__}"
    try:
        default = default_layer_name(net)
    except GradfaithError:
        default = None
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and n != layer.name]
    example = default if default not in (None, layer.name) else convs[-1] if convs else None
    such = f" such as {example}" if example else ""
    if layer.name == default:  # not the user's choice: the message must not send them back to it
        raise GradfaithError(f"--target-layer: {type(net).__name__}'s default target layer '{layer.name}' gives {what} "
                             f"output, not a spatial map; pass --target-layer with a convolutional layer{such}")
    raise GradfaithError(f"--target-layer: '{layer.name}' gives {what} output, not a spatial map; pick a "
                         f"convolutional layer{such}")
