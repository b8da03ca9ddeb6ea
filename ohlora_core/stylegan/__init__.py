"""genforce-compatible StyleGAN (v1) generator and discriminator."""

from .checkpoint import load_discriminator, load_generator, smoke_discriminator, smoke_generator
from .discriminator import StyleGANDiscriminator
from .generator import StyleGANGenerator, postprocess, synthesize_w

__all__ = [
    "StyleGANGenerator",
    "StyleGANDiscriminator",
    "postprocess",
    "synthesize_w",
    "load_generator",
    "load_discriminator",
    "smoke_generator",
    "smoke_discriminator",
]
