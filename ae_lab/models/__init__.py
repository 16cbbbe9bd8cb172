"""Autoencoder networks: pure nn.Modules, images [B, 3, H, W] in [0, 1] in and out.

All three share one encoder/decoder (blocks.py); the U-Net adds skip connections, the VAE a
Gaussian posterior. Each has forward(x) -> recon, encode(x) -> z [B, latent_dim] and
forward_with_latent(x) -> (recon, z), which runs the encoder once.
"""

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ae_lab.models.blocks import (
    check_architecture,
    conv_norm_act,
    latent_layers,
    resolve_skip_levels,
    up_block,
)

# exp(logvar) overflows float32 near 88; a wide clamp only matters for diverging runs.
_LOGVAR_RANGE = (-30.0, 20.0)


class ConvAutoencoder(nn.Module):
    """Strided-conv encoder -> z [B, latent_dim] -> mirrored upsampling decoder, sigmoid output.

    Input and output are [B, in_channels, image_size, image_size] in [0, 1]; image_size must be a
    multiple of 2**depth. Channels double per level from `base_channels`, capped at `max_channels`.
    `latent_layout` "dense" (a Linear over the whole map) or "spatial" (a 1x1 conv per cell).
    """

    latent_outputs = 1  # latent vectors the encoder emits (the VAE: mean and log-variance)

    def __init__(
        self,
        image_size: int = 128,
        in_channels: int = 3,
        base_channels: int = 32,
        depth: int = 4,
        latent_dim: int = 128,
        max_channels: int = 256,
        bottleneck_channels: int = 32,
        latent_layout: str = "dense",
    ) -> None:
        super().__init__()
        check_architecture(
            type(self),
            latent_layout,
            image_size=image_size,
            in_channels=in_channels,
            base_channels=base_channels,
            depth=depth,
            latent_dim=latent_dim,
            max_channels=max_channels,
            bottleneck_channels=bottleneck_channels,
        )
        self.image_size, self.latent_dim = image_size, latent_dim
        self.channels = [min(base_channels * 2**i, max_channels) for i in range(depth)]
        ins = [in_channels, *self.channels[:-1]]
        self.encoder = nn.ModuleList(
            conv_norm_act(i, o, stride=2) for i, o in zip(ins, self.channels, strict=True)
        )
        self.to_latent, self.from_latent = latent_layers(
            self.channels[-1],
            image_size // 2**depth,
            bottleneck_channels,
            latent_dim,
            self.latent_outputs,
            latent_layout,
        )
        # Decoder level i outputs the channels of level i-1; the full-resolution level 0 is halved
        # because its convs dominate the CPU cost of a training step.
        outs = [max(self.channels[0] // 2, 1), *self.channels[:-1]]
        self.decoder = nn.ModuleList(
            up_block(c, o) for c, o in zip(self.channels, outs, strict=True)
        )
        self.head = nn.Conv2d(outs[0], in_channels, 3, padding=1)
        self.skip_fuse = nn.ModuleDict()  # U-Net skips, by level (UNetAutoencoder)

    def features(self, x: Tensor) -> list[Tensor]:
        """[B, C, H, W] -> encoder level features, level i: [B, c_i, H/2**(i+1), W/2**(i+1)]."""
        features = []
        for level in self.encoder:
            x = level(x)
            features.append(x)
        return features

    def encode(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> z [B, latent_dim]."""
        return self.to_latent(self.features(x)[-1])

    def decode(self, z: Tensor, features: list[Tensor] | None = None) -> Tensor:
        """z [B, latent_dim] (+ encoder features, for the U-Net's skips) -> [B, C, H, W] in [0, 1]."""
        x = self.from_latent(z)
        for i in reversed(range(len(self.decoder))):
            if str(i) in self.skip_fuse:  # U-Net skip: fuse encoder level i's features with x
                x = self.skip_fuse[str(i)](torch.cat([x, features[i]], dim=1))
            x = self.decoder[i](x)
        return torch.sigmoid(self.head(x))

    def forward_with_latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (reconstruction [B, C, H, W], z [B, latent_dim]), encoding once."""
        features = self.features(x)
        z = self.to_latent(features[-1])
        return self.decode(z, features), z

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> reconstruction [B, C, H, W] in [0, 1]."""
        return self.forward_with_latent(x)[0]


class UNetAutoencoder(ConvAutoencoder):
    """ConvAutoencoder whose decoder also receives encoder features at `skip_levels`.

    Level i's skip carries the encoder map [B, c_i, H/2**(i+1), W/2**(i+1)] into the decoder at
    the same resolution: concatenated with the decoder's map, then fused back to c_i channels by
    a 1x1 conv (`skip_fuse[str(i)]`, see `decode`). The latent z is still computed and decoded.
    `skip_levels=None` uses every level 0..depth-1; `[]` builds exactly the ConvAutoencoder.

    Trade-off: skips bypass the bottleneck. With full skips, especially the high-resolution
    shallow ones (level 0, 1), the network learns to copy its input, defects included, so the
    reconstructions look excellent but the residual-based anomaly maps are weak. Dropping the
    shallowest skips (e.g. `skip_levels=[2, 3]` at depth 4) restores the bottleneck's
    regularising effect on fine detail while the deep skips still help with coarse layout.
    """

    def __init__(self, skip_levels: Iterable[int] | None = None, **kwargs: int | str) -> None:
        super().__init__(**kwargs)
        self.skip_levels = resolve_skip_levels(type(self), skip_levels, len(self.channels))
        for i in self.skip_levels:  # [x, features[i]] back to c_i channels
            self.skip_fuse[str(i)] = conv_norm_act(2 * self.channels[i], self.channels[i], 1)


class VariationalAutoencoder(ConvAutoencoder):
    """Same encoder/decoder as ConvAutoencoder; the encoder predicts mu and logvar [B, latent_dim].

    Training mode samples z = mu + exp(logvar / 2) * eps (reparameterisation trick); eval mode
    decodes z = mu, so evaluation and anomaly scores are deterministic.
    """

    latent_outputs = 2

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (mu, logvar), each [B, latent_dim]."""
        mu, logvar = self.to_latent(self.features(x)[-1]).chunk(2, dim=1)
        return mu, logvar.clamp(*_LOGVAR_RANGE)

    def encode(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> posterior mean mu [B, latent_dim]."""
        return self.posterior(x)[0]

    def forward_with_kl(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (reconstruction [B, C, H, W], kl scalar).

        kl = mean over the batch of sum over latent dims of KL(N(mu, sigma^2) || N(0, 1)).
        """
        mu, logvar = self.posterior(x)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        return self._decode_posterior(mu, logvar), kl

    def forward_with_latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (reconstruction, posterior mean mu [B, latent_dim])."""
        mu, logvar = self.posterior(x)
        return self._decode_posterior(mu, logvar), mu

    def _decode_posterior(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """Decode a sample of N(mu, exp(logvar)) in training, mu in eval."""
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z)
