"""Building blocks shared by the three autoencoders: conv levels, latent projections, skeleton.

Geometry (image_size=H, depth=D, channels c_0..c_{D-1}, c_i = min(base * 2**i, max_channels)):
encoder level i maps [B, c_{i-1}, H/2**i, H/2**i] -> [B, c_i, H/2**(i+1), H/2**(i+1)]; the last map
[B, c_{D-1}, H/2**D, H/2**D] is squeezed by a 1x1 conv to `bottleneck_channels` and flattened into a
Linear layer to z [B, latent_dim]. The decoder mirrors it; decoder level i upsamples
H/2**(i+1) -> H/2**i, optionally after fusing encoder level i's features (U-Net skip).
"""

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ae_lab.errors import AeLabError


def check_architecture(
    image_size: int,
    in_channels: int,
    base_channels: int,
    depth: int,
    latent_dim: int,
    max_channels: int,
    bottleneck_channels: int,
) -> None:
    """Raise AeLabError when the network settings cannot build a valid encoder/decoder."""
    positive = {
        "model.net.image_size (data.image_size)": image_size,
        "model.net.in_channels": in_channels,
        "model.net.base_channels": base_channels,
        "model.net.depth": depth,
        "model.latent_dim (model.net.latent_dim)": latent_dim,
        "model.net.max_channels": max_channels,
        "model.net.bottleneck_channels": bottleneck_channels,
    }
    for name, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise AeLabError(
                f"{name} must be a positive integer, got {value!r}. Set it to a positive integer "
                "in conf/model/<model>.yaml or on the command line."
            )
    stride = 2**depth
    if image_size % stride != 0:
        lower = max(stride, image_size // stride * stride)
        valid_depths = [d for d in range(1, depth) if image_size % 2**d == 0]
        depth_hint = (
            f", or keep the size and set model.net.depth={valid_depths[-1]}" if valid_depths else ""
        )
        raise AeLabError(
            f"data.image_size={image_size} (model.net.image_size) is not divisible by "
            f"2**model.net.depth = 2**{depth} = {stride}: each of the {depth} encoder levels halves "
            f"the image, so the size must be a multiple of {stride}. Use data.image_size={lower} or "
            f"{lower + stride}{depth_hint}."
        )
    if max_channels < base_channels:
        raise AeLabError(
            f"model.net.max_channels={max_channels} is smaller than model.net.base_channels="
            f"{base_channels}; set max_channels >= base_channels."
        )


def resolve_skip_levels(skip_levels: Iterable[int] | None, depth: int) -> tuple[int, ...]:
    """Sorted unique skip levels; None means every level 0..depth-1."""
    if skip_levels is None:
        return tuple(range(depth))
    levels = list(skip_levels)
    bad = [lv for lv in levels if isinstance(lv, bool) or not isinstance(lv, int)]
    bad += [lv for lv in levels if lv not in bad and not 0 <= lv < depth]
    if bad:
        raise AeLabError(
            f"model.net.skip_levels={levels} contains invalid levels {bad}: each level must be an "
            f"integer in 0..{depth - 1} (model.net.depth={depth}; 0 is the shallowest, "
            "highest-resolution level). Use null for all levels or [] for none."
        )
    return tuple(sorted(set(levels)))


def level_channels(base_channels: int, depth: int, max_channels: int) -> list[int]:
    """Channels of each encoder level, doubling per level and capped at max_channels."""
    return [min(base_channels * 2**i, max_channels) for i in range(depth)]


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


class Encoder(nn.Module):
    """[B, C, H, W] -> list of level features, level i: [B, channels[i], H/2**(i+1), W/2**(i+1)]."""

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        ins = [in_channels, *channels[:-1]]
        self.levels = nn.ModuleList(
            conv_norm_act(i, o, stride=2) for i, o in zip(ins, channels, strict=True)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """[B, channels[-1], H/2**D, W/2**D] (+ encoder features) -> [B, out_channels, H, W] in [0, 1].

    Levels in `skip_levels` concatenate the encoder feature of the same resolution and fuse the
    2*c channels back to c with a 1x1 conv (`skip_fuse[str(level)]`) before upsampling.
    """

    def __init__(
        self, channels: list[int], out_channels: int, skip_levels: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        self.skip_levels = skip_levels
        self.skip_fuse = nn.ModuleDict(
            {
                str(i): conv_norm_act(2 * channels[i], channels[i], kernel_size=1)
                for i in skip_levels
            }
        )
        # Level i outputs the channels of level i-1; the full-resolution level 0 is halved
        # because its convs dominate the CPU cost of a training step.
        outs = [max(channels[0] // 2, 1), *channels[:-1]]
        self.levels = nn.ModuleList(up_block(c, o) for c, o in zip(channels, outs, strict=True))
        self.head = nn.Conv2d(outs[0], out_channels, 3, padding=1)

    def forward(self, x: Tensor, features: list[Tensor] | None = None) -> Tensor:
        for i in reversed(range(len(self.levels))):
            if i in self.skip_levels:
                if features is None:
                    raise ValueError(f"decoder skip level {i} needs the encoder features")
                x = self.skip_fuse[str(i)](torch.cat([x, features[i]], dim=1))
            x = self.levels[i](x)
        return torch.sigmoid(self.head(x))


LATENT_LAYOUTS = ("dense", "spatial")


def check_latent_layout(layout: str, latent_dim: int, spatial: int) -> None:
    """Raise AeLabError unless `layout` is known and, if spatial, latent_dim tiles the s x s map."""
    if layout not in LATENT_LAYOUTS:
        raise AeLabError(
            f"Unknown model.net.latent_layout={layout!r}: the valid choices are "
            f"{', '.join(LATENT_LAYOUTS)}. Fix it in conf/model/<model>.yaml or on the command line."
        )
    if layout == "spatial" and latent_dim % (spatial * spatial) != 0:
        cells = spatial * spatial
        raise AeLabError(
            f"model.latent_dim={latent_dim} does not fill the {spatial}x{spatial} spatial latent: "
            f"with model.net.latent_layout=spatial z is k channels x {cells} cells, so latent_dim "
            f"must be a multiple of {cells} (e.g. {max(cells, latent_dim // cells * cells)}), or "
            "use latent_layout=dense."
        )


class ToLatent(nn.Module):
    """[B, in_ch, s, s] -> [B, out_features].

    dense: a 1x1 squeeze to `bottleneck_channels` keeps the flattening Linear small (a 256x8x8 map
    would need 2M weights per latent projection). spatial: a 1x1 conv to out_features / s**2
    channels, flattened: the same number of latent values, but each describes its own region, so
    the decoder need not learn where things are from a global code (bench/README.md, detection).
    """

    def __init__(
        self,
        in_ch: int,
        spatial: int,
        bottleneck_channels: int,
        out_features: int,
        layout: str = "dense",
    ) -> None:
        super().__init__()
        self.squeeze = conv_norm_act(in_ch, bottleneck_channels, kernel_size=1)
        if layout == "spatial":
            self.linear = nn.Conv2d(bottleneck_channels, out_features // spatial**2, 1)
        else:
            self.linear = nn.Linear(bottleneck_channels * spatial * spatial, out_features)
        self.layout = layout

    def forward(self, x: Tensor) -> Tensor:
        if self.layout == "spatial":
            # [B, k, s, s] -> [B, k*s*s] channel-major, so chunk(2, dim=1) splits channels (VAE).
            return self.linear(self.squeeze(x)).flatten(1)
        return self.linear(self.squeeze(x).flatten(1))


class FromLatent(nn.Module):
    """[B, latent_dim] -> [B, out_ch, s, s], the mirror of ToLatent."""

    def __init__(
        self,
        latent_dim: int,
        bottleneck_channels: int,
        spatial: int,
        out_ch: int,
        layout: str = "dense",
    ) -> None:
        super().__init__()
        self.layout = layout
        if layout == "spatial":
            self.shape = (latent_dim // spatial**2, spatial, spatial)
            self.linear = nn.Conv2d(self.shape[0], bottleneck_channels, 1)
        else:
            self.shape = (bottleneck_channels, spatial, spatial)
            self.linear = nn.Linear(latent_dim, bottleneck_channels * spatial * spatial)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.expand = conv_norm_act(bottleneck_channels, out_ch, kernel_size=1)

    def forward(self, z: Tensor) -> Tensor:
        if self.layout == "spatial":
            return self.expand(self.act(self.linear(z.view(z.shape[0], *self.shape))))
        return self.expand(self.act(self.linear(z)).view(z.shape[0], *self.shape))


class LatentAutoencoder(nn.Module):
    """Encoder -> flat latent -> decoder skeleton; subclasses define encode/decode/forward.

    `latent_outputs` > 1 makes `to_latent` emit that many stacked latent vectors (the VAE's
    mean and log-variance); `skip_levels` adds U-Net skip fusions to the decoder;
    `latent_layout` "dense" (a Linear over the whole map) or "spatial" (a 1x1 conv per cell).
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        base_channels: int,
        depth: int,
        latent_dim: int,
        max_channels: int,
        bottleneck_channels: int,
        *,
        skip_levels: tuple[int, ...] = (),
        latent_outputs: int = 1,
        latent_layout: str = "dense",
    ) -> None:
        super().__init__()
        check_architecture(
            image_size,
            in_channels,
            base_channels,
            depth,
            latent_dim,
            max_channels,
            bottleneck_channels,
        )
        self.image_size = image_size
        self.latent_dim = latent_dim
        channels = level_channels(base_channels, depth, max_channels)
        spatial = image_size // 2**depth
        check_latent_layout(latent_layout, latent_dim, spatial)
        self.encoder = Encoder(in_channels, channels)
        self.to_latent = ToLatent(
            channels[-1], spatial, bottleneck_channels, latent_outputs * latent_dim, latent_layout
        )
        self.from_latent = FromLatent(
            latent_dim, bottleneck_channels, spatial, channels[-1], latent_layout
        )
        self.decoder = Decoder(channels, in_channels, skip_levels)

    def forward_with_latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (reconstruction [B, C, H, W], z [B, latent_dim]), encoding once."""
        features = self.encoder(x)
        z = self.to_latent(features[-1])
        return self.decoder(self.from_latent(z), features), z
