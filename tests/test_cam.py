import numpy as np
import pytest
import torch

from gradfaith_tui.cam.layers import default_layer_name, find
from gradfaith_tui.cam.methods import cam_batch, method_class, upsample
from gradfaith_tui.config import ModelSpec, spec_for
from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.models.factory import build


@pytest.mark.parametrize("name, layer", [
    ("resnet10t", "layer4.0"), ("densenet-s", "features.norm5"), ("tinynet_e", "bn2"), ("vit-tiny-p8", "blocks.5.norm1")])
def test_default_target_layer_per_family(name, layer):
    model = build(spec_for(name), 32)
    assert default_layer_name(model.net) == layer


def test_vit_tokens_reshape_to_the_patch_grid_without_prefix_tokens():
    model = build(spec_for("vit-tiny-p8"), 32).eval()
    layer = find(model.net)
    maps, logits = cam_batch(model, layer, torch.rand(2, 1, 32, 32), np.array([0, 2]))
    assert maps.shape == (2, 4, 4)  # 32 px / 8-px patches; the class token is dropped
    assert logits.shape == (2, 3)
    assert np.all((maps >= 0) & (maps <= 1))


def test_cnn_maps_are_native_resolution_and_upsample_to_input():
    model = build(spec_for("resnet10t"), 64).eval()
    maps, _ = cam_batch(model, find(model.net), torch.rand(3, 1, 64, 64), np.array([0, 1, 2]))
    assert maps.shape == (3, 4, 4)
    assert upsample(maps, 64).shape == (3, 64, 64)


def test_matches_pytorch_grad_cam_at_input_resolution():
    """Our native-grid maps, upsampled, equal the library's own upsampled output."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 64).eval()
    x = torch.rand(2, 1, 64, 64)
    ours, _ = cam_batch(model, find(model.net), x, np.array([1, 2]))
    with GradCAM(model=model, target_layers=[model.net.layer4[-1]]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    up = upsample(ours, 64).numpy()
    np.testing.assert_allclose(up, ref, atol=1e-3)


def test_unknown_layer_and_method_are_clear_errors():
    model = build(ModelSpec("r", "resnet10t", "resnet50"), 32)
    with pytest.raises(GradfaithError, match="--target-layer: 'layer9'"):
        find(model.net, "layer9")
    with pytest.raises(GradfaithError, match="--method"):
        method_class("magic")


def test_scorecam_draws_no_progress_bar_of_its_own(capfd):
    model = build(spec_for("resnet10t"), 32).eval()
    maps, _ = cam_batch(model, find(model.net), torch.rand(2, 1, 32, 32), np.array([0, 2]), "scorecam")
    assert maps.shape[0] == 2 and np.isfinite(maps).all()
    assert capfd.readouterr().err == ""  # precompute's bars are the only ones on stderr


def test_channels_last_stages_are_explained_on_their_spatial_grid():
    """Swin keeps (B, H, W, C) between stages: read as NCHW its maps were H x W... of channels, (B, W, C)."""
    from gradfaith_tui.cam.engine import explainer
    from gradfaith_tui.cam.layers import check_spatial

    torch.manual_seed(0)
    spec = ModelSpec("s", "swin_tiny_patch4_window7_224", "swin",
                     {"embed_dim": 24, "depths": (1, 1), "num_heads": (1, 1), "window_size": 4})
    model = build(spec, 32).eval()
    layer = find(model.net)
    x = torch.rand(2, 1, 32, 32)
    check_spatial(model, model.net, layer, x[:1])
    shapes = set()
    for engine in ("fast", "library"):
        with explainer(model, layer, "gradcam", engine) as explain:
            shapes.add(tuple(explain(x).maps.shape))
    assert shapes == {(2, 4, 4)}  # 32 px / 4-px patches, halved by one merge
    assert find(model.net, "patch_embed.proj").reshape is None  # a convolution: NCHW already


def test_a_default_layer_without_a_spatial_map_names_one_that_has_one():
    from gradfaith_tui.cam.layers import check_spatial

    model = build(ModelSpec("l", "levit_128s", "levit"), 64).eval()
    with pytest.raises(GradfaithError, match=r"^--target-layer: LevitDistilled's default target layer 'stages.2' gives .*"
                                             r"pass --target-layer with a convolutional layer such as (\S+)$") as err:
        check_spatial(model, model.net, find(model.net), torch.rand(1, 1, 64, 64))
    suggested = str(err.value).rsplit(" ", 1)[-1]
    check_spatial(model, model.net, find(model.net, suggested), torch.rand(1, 1, 64, 64))  # which does
