"""Building blocks shared by the three autoencoders: settings checks, conv levels, latent layers.

Geometry (image_size=H, depth=D, channels c_0..c_{D-1}, c_i = min(base * 2**i, max_channels)):
encoder level i maps [B, c_{i-1}, H/2**i, H/2**i] -> [B, c_i, H/2**(i+1), H/2**(i+1)]; the last map
[B, c_{D-1}, H/2**D, H/2**D] is squeezed by a 1x1 conv to `bottleneck_channels` and projected to
z [B, latent_dim]. The decoder mirrors it; decoder level i upsamples H/2**(i+1) -> H/2**i.
"""

from collections.abc import Iterable

from torch import nn

from ae_lab.errors import SettingError, check_number

LATENT_LAYOUTS = ("dense", "spatial")


def check_architecture(owner: type, latent_layout: str, **sizes: int) -> None:
    """Raise SettingError (naming `owner`'s arguments) when they cannot build a valid
    encoder/decoder; `sizes`: the positive integers (image_size, depth, latent_dim, channels)."""
    for name, value in sizes.items():
        check_number(owner, name, value, 1, 2**16, integer=True)
    image_size, depth, latent_dim = sizes["image_size"], sizes["depth"], sizes["latent_dim"]
    stride = 2**depth
    if image_size % stride != 0:
        lower = max(stride, image_size // stride * stride)
        valid_depths = [d for d in range(1, depth) if image_size % 2**d == 0]
        depth_hint = f", or keep the size and use depth={valid_depths[-1]}" if valid_depths else ""
        raise SettingError(
            owner,
            ("image_size", "depth"),
            f"image_size={image_size} is not divisible by 2**depth = 2**{depth} = {stride}: each "
            f"of the {depth} encoder levels halves the image, so the size must be a multiple of "
            f"{stride}. Use image_size={lower} or {lower + stride}{depth_hint}",
        )
    if sizes["max_channels"] < sizes["base_channels"]:
        raise SettingError(
            owner,
            ("max_channels", "base_channels"),
            f"max_channels={sizes['max_channels']} is smaller than base_channels="
            f"{sizes['base_channels']}",
        )
    if latent_layout not in LATENT_LAYOUTS:
        raise SettingError(
            owner,
            "latent_layout",
            f"latent_layout={latent_layout!r} is not one of {', '.join(LATENT_LAYOUTS)}",
        )
    cells = (image_size // stride) ** 2
    if latent_layout == "spatial" and latent_dim % cells != 0:
        side = image_size // stride
        raise SettingError(
            owner,
            ("latent_dim", "latent_layout"),
            f"latent_dim={latent_dim} does not fill the {side}x{side} spatial latent: with "
            f"latent_layout=spatial z is k channels x {cells} cells, so latent_dim must be a "
            f"multiple of {cells} (e.g. {max(cells, latent_dim // cells * cells)}), or use "
            "latent_layout=dense",
        )


def resolve_skip_levels(
    owner: type, skip_levels: Iterable[int] | None, depth: int
) -> tuple[int, ...]:
    """Sorted unique skip levels; None means every level 0..depth-1; -1 is the deepest, as in a
    Python index (`unet_coarse` stays right at any depth)."""
    if skip_levels is None:
        return tuple(range(depth))
    levels = list(skip_levels)
    bad = [lv for lv in levels if isinstance(lv, bool) or not isinstance(lv, int)]
    bad += [lv for lv in levels if lv not in bad and not -depth <= lv < depth]
    if bad:
        raise SettingError(
            owner,
            "skip_levels",
            f"skip_levels={levels} contains invalid levels {bad}: each level must be an integer "
            f"in 0..{depth - 1} (depth={depth}; 0 is the shallowest, highest-resolution level; "
            f"-1..-{depth} count from the deepest). Use null for all levels or [] for none",
        )
    return tuple(sorted({lv % depth for lv in levels}))


def conv_norm_act(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias: the norm's shift replaces it) + BatchNorm + LeakyReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


def up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """[B, in_ch, h, w] -> [B, out_ch, 2h, 2w]; nearest upsampling + conv avoids the
    checkerboard artefacts of transposed convs, which would show up in the anomaly maps."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_norm_act(in_ch, out_ch))


def latent_layers(
    channels: int, side: int, bottleneck: int, latent_dim: int, outputs: int, layout: str
) -> tuple[nn.Sequential, nn.Sequential]:
    """(to_latent: [B, channels, s, s] -> [B, outputs * latent_dim], from_latent: the mirror).

    dense: a 1x1 squeeze to `bottleneck` channels keeps the flattening Linear small (a 256x8x8 map
    would need 2M weights per latent projection). spatial: a 1x1 conv to latent_dim / s**2
    channels, flattened channel-major (so the VAE's chunk(2, dim=1) splits channels): the same
    number of latent values, but each describes its own region, so the decoder need not learn
    where things are from a global code (bench/README.md, history of 2026-11-29).
    """
    squeeze = conv_norm_act(channels, bottleneck, kernel_size=1)
    expand = conv_norm_act(bottleneck, channels, kernel_size=1)
    act = nn.LeakyReLU(0.2, inplace=True)
    if layout == "dense":
        flat = bottleneck * side * side
        to_latent = nn.Sequential(squeeze, nn.Flatten(), nn.Linear(flat, outputs * latent_dim))
        unflatten = nn.Unflatten(1, (bottleneck, side, side))
        return to_latent, nn.Sequential(nn.Linear(latent_dim, flat), act, unflatten, expand)
    k = latent_dim // side**2
    to_latent = nn.Sequential(squeeze, nn.Conv2d(bottleneck, outputs * k, 1), nn.Flatten())
    unflatten = nn.Unflatten(1, (k, side, side))
    return to_latent, nn.Sequential(unflatten, nn.Conv2d(k, bottleneck, 1), act, expand)
