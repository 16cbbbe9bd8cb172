"""Autoencoder networks: pure nn.Modules, images [B, 3, H, W] in [0, 1] in and out."""

from ae_lab.models.conv_ae import ConvAutoencoder
from ae_lab.models.unet_ae import UNetAutoencoder
from ae_lab.models.vae import VariationalAutoencoder

__all__ = ["ConvAutoencoder", "UNetAutoencoder", "VariationalAutoencoder"]
