"""The one place for shared decisions: class order, folder names, default paths, profiles."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

# Class order is fixed whatever the folder order: Normal=0, Benign=1, Malignant=2.
CLASS_NAMES: tuple[str, ...] = ("Normal", "Benign", "Malignant")
# IQ-OTH/NCCD folder names; the published dataset misspells "Bengin".
CLASS_FOLDERS: dict[str, int] = {
    "normal cases": 0,
    "bengin cases": 1,
    "benign cases": 1,
    "malignant cases": 2,
}
WRITE_FOLDERS: tuple[str, ...] = ("Normal cases", "Bengin cases", "Malignant cases")
WRITE_STEMS: tuple[str, ...] = ("Normal case", "Bengin case", "Malignant case")

# Maps that do not depend on the target class (EigenCAM: the activations' first principal component; plain
# attention rollout): seeds that predict differently still explain the same thing, for Consist.
CLASS_AGNOSTIC_METHODS: tuple[str, ...] = ("eigencam", "rollout")
# Methods that follow a ViT's attention (cam.rollout): a CNN has none, so they do not apply to it.
ROLLOUT_METHODS: tuple[str, ...] = ("rollout", "grad-rollout")

DEFAULT_DATA = Path("data/phantoms")
DEFAULT_CHECKPOINTS = Path("checkpoints")
DEFAULT_CACHE = Path("data/cache")

# The paper's five architectures, in its column order.
PAPER_ARCHS: tuple[str, ...] = (
    "resnet50",
    "resnet101",
    "densenet161",
    "efficientnet_b0",
    "vit_base_patch16_224",
)
PAPER_LABELS: dict[str, str] = {
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "densenet161": "DenseNet-161",
    "efficientnet_b0": "EfficientNet-B0",
    "vit_base_patch16_224": "ViT-B/16",
}


@dataclass(frozen=True)
class ModelSpec:
    """A timm architecture plus the constructor arguments that make it what we train."""

    name: str  # the key users type in --models
    arch: str  # timm model name
    family: str  # the paper architecture this one stands for
    kwargs: dict = field(default_factory=dict)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.arch}({extra})" if extra else self.arch


# Demo members of the same five families, small enough to train in seconds on 2 CPU cores.
# output_stride=16 / a 3-block DenseNet keep a 4x4 CAM grid at 64 px; ViT uses 8-px patches (8x8 grid).
DEMO_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("resnet10t", "resnet10t", "resnet50", {"output_stride": 16}),
    ModelSpec("resnet14t", "resnet14t", "resnet101", {"output_stride": 16}),
    ModelSpec("densenet-s", "densenet121", "densenet161", {"growth_rate": 16, "block_config": (4, 8, 6)}),
    ModelSpec("tinynet_e", "tinynet_e", "efficientnet_b0", {"output_stride": 16}),
    ModelSpec("vit-tiny-p8", "vit_tiny_patch16_224", "vit_base_patch16_224", {"patch_size": 8, "depth": 6}),
)
PAPER_SPECS: tuple[ModelSpec, ...] = tuple(ModelSpec(a, a, a) for a in PAPER_ARCHS)
KNOWN_SPECS: dict[str, ModelSpec] = {s.name: s for s in DEMO_SPECS + PAPER_SPECS}


def family_of(arch: str) -> str:
    """Which paper architecture a timm name belongs to (for labels); itself if unknown."""
    for prefix, fam in (("resnet", "resnet50"), ("densenet", "densenet161"), ("efficientnet", "efficientnet_b0"),
                        ("tinynet", "efficientnet_b0"), ("vit", "vit_base_patch16_224")):
        if arch.startswith(prefix):
            return arch if arch in PAPER_ARCHS else fam
    return arch


def spec_for(name: str) -> ModelSpec:
    """A named spec, or any timm name as-is (validated later, where timm is imported)."""
    return KNOWN_SPECS.get(name) or ModelSpec(name, name, family_of(name))


@dataclass(frozen=True)
class Profile:
    name: str
    img_size: int
    epochs: int
    batch_size: int
    lr: float
    specs: tuple[ModelSpec, ...]
    seeds: tuple[int, ...]


PROFILES: dict[str, Profile] = {
    "demo": Profile("demo", img_size=64, epochs=10, batch_size=16, lr=1e-3, specs=DEMO_SPECS, seeds=(0, 1)),
    "paper": Profile("paper", img_size=224, epochs=50, batch_size=32, lr=1e-4, specs=PAPER_SPECS, seeds=(0,)),
}


def profile(name: str, **overrides) -> Profile:
    from gradfaith_tui.errors import GradfaithError

    if name not in PROFILES:
        raise GradfaithError(f"--profile: unknown profile '{name}' (choose from {', '.join(PROFILES)})")
    return replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class CamSettings:
    method: str = "gradcam"
    tau: float = 0.5  # binarisation threshold on the min-max normalised CAM (LocAcc, IoU, Consist)
    baseline: str = "black"  # what replaces removed pixels in Faith and outside the lungs in the lungs-only check
    batch_size: int = 32
    engine: str = "fast"  # Grad-CAM's implementation: our fused one, or "library" (pytorch-grad-cam's, as the other CAM methods always are)
    deep_steps: int = 0  # deletion/insertion curve steps (--deep); 0 skips them
    sanity_cases: int = 8  # cases for the cascading randomisation test per reference model; 0 skips it
    compile: bool = False  # the fast engine's trunk through torch.compile (~1 min per model; for large sets)
