"""Classic convolutional autoencoder: the latent vector is the only path from input to output."""

from torch import Tensor

from ae_lab.models.blocks import LatentAutoencoder


class ConvAutoencoder(LatentAutoencoder):
    """Strided-conv encoder -> z [B, latent_dim] -> mirrored upsampling decoder, sigmoid output.

    Input and output are [B, in_channels, image_size, image_size] in [0, 1]; image_size must be a
    multiple of 2**depth. Channels double per level from `base_channels`, capped at `max_channels`.
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
            latent_layout=latent_layout,
        )

    def encode(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> z [B, latent_dim]."""
        return self.to_latent(self.encoder(x)[-1])

    def decode(self, z: Tensor) -> Tensor:
        """z [B, latent_dim] -> reconstruction [B, C, H, W] in [0, 1]."""
        return self.decoder(self.from_latent(z))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> reconstruction [B, C, H, W] in [0, 1]."""
        return self.decode(self.encode(x))
