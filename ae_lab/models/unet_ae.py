"""U-Net autoencoder: the convolutional autoencoder plus encoder-to-decoder skip connections."""

from collections.abc import Iterable

from torch import Tensor

from ae_lab.models.blocks import LatentAutoencoder, resolve_skip_levels


class UNetAutoencoder(LatentAutoencoder):
    """ConvAutoencoder whose decoder also receives encoder features at `skip_levels`.

    Level i's skip carries the encoder map [B, c_i, H/2**(i+1), W/2**(i+1)] into the decoder at
    the same resolution (concatenated, then fused back to c_i channels by a 1x1 conv). The latent
    z [B, latent_dim] is still computed and decoded, so `encode` works as for the plain AE.
    `skip_levels=None` uses every level 0..depth-1; `[]` builds exactly the ConvAutoencoder.

    Trade-off: skips bypass the bottleneck. With full skips, especially the high-resolution
    shallow ones (level 0, 1), the network learns to copy its input, defects included, so the
    reconstructions look excellent but the residual-based anomaly maps are weak. Dropping the
    shallowest skips (e.g. `skip_levels=[2, 3]` at depth 4) restores the bottleneck's
    regularising effect on fine detail while the deep skips still help with coarse layout.
    """

    def __init__(
        self,
        image_size: int = 128,
        in_channels: int = 3,
        base_channels: int = 32,
        depth: int = 4,
        latent_dim: int = 128,
        max_channels: int = 256,
        bottleneck_channels: int = 32,
        skip_levels: Iterable[int] | None = None,
        latent_layout: str = "dense",
    ) -> None:
        super().__init__(
            image_size,
            in_channels,
            base_channels,
            depth,
            latent_dim,
            max_channels,
            bottleneck_channels,
            skip_levels=resolve_skip_levels(skip_levels, depth),
            latent_layout=latent_layout,
        )
        self.skip_levels = self.decoder.skip_levels

    def encode(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> z [B, latent_dim]."""
        return self.to_latent(self.encoder(x)[-1])

    def decode(self, z: Tensor, features: list[Tensor] | None = None) -> Tensor:
        """z [B, latent_dim] (+ encoder features, needed when skip_levels is not empty) ->
        reconstruction [B, C, H, W] in [0, 1]."""
        return self.decoder(self.from_latent(z), features)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> reconstruction [B, C, H, W] in [0, 1]."""
        features = self.encoder(x)
        return self.decode(self.to_latent(features[-1]), features)
