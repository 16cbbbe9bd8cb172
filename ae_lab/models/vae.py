"""Variational autoencoder with a diagonal Gaussian posterior and a N(0, I) prior."""

import torch
from torch import Tensor

from ae_lab.models.blocks import LatentAutoencoder

# exp(logvar) overflows float32 near 88; a wide clamp only matters for diverging runs.
_LOGVAR_RANGE = (-30.0, 20.0)


class VariationalAutoencoder(LatentAutoencoder):
    """Same encoder/decoder as ConvAutoencoder; the encoder predicts mu and logvar [B, latent_dim].

    Training mode samples z = mu + exp(logvar / 2) * eps (reparameterisation trick); eval mode
    decodes z = mu, so evaluation and anomaly scores are deterministic.
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
            latent_outputs=2,
            latent_layout=latent_layout,
        )

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (mu, logvar), each [B, latent_dim]."""
        mu, logvar = self.to_latent(self.encoder(x)[-1]).chunk(2, dim=1)
        return mu, logvar.clamp(*_LOGVAR_RANGE)

    def encode(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> posterior mean mu [B, latent_dim]."""
        return self.posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """z [B, latent_dim] -> reconstruction [B, C, H, W] in [0, 1]."""
        return self.decoder(self.from_latent(z))

    def forward_with_kl(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (reconstruction [B, C, H, W], kl scalar).

        kl = mean over the batch of sum over latent dims of KL(N(mu, sigma^2) || N(0, 1)).
        """
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        return self.decode(z), kl

    def forward_with_latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (reconstruction, posterior mean mu [B, latent_dim]); samples in training."""
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> reconstruction [B, C, H, W] in [0, 1]."""
        return self.forward_with_kl(x)[0]
