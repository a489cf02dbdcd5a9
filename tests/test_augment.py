import torch
import torch.nn.functional as F

from kdrun.data.augment import Normalize, crop_flip


def _batch(n=6):
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def test_shape_dtype_and_identity_without_augmentation():
    x = _batch()
    out = crop_flip(x, 0, False, torch.Generator().manual_seed(1))
    assert torch.equal(out, x)
    out = crop_flip(x, 2, True, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8


def test_same_seed_same_views():
    x = _batch()
    a = crop_flip(x, 2, True, torch.Generator().manual_seed(7))
    b = crop_flip(x, 2, True, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_every_view_is_a_crop_of_the_padded_image_maybe_flipped():
    x = _batch(20)
    out = crop_flip(x, 2, True, torch.Generator().manual_seed(3))
    padded = F.pad(x, (2, 2, 2, 2))
    for img, view in zip(padded, out, strict=True):
        crops = [img[:, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(view, c) or torch.equal(view, c.flip(2)) for c in crops)


def test_normalize_gives_zero_mean_unit_std_on_the_training_split():
    x = _batch(50)
    norm = Normalize(x, torch.device("cpu"))
    y = norm(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
