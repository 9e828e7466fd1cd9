"""Autoencoders: reconstruct the image from the representation; denoising ones from a corrupted copy.

Hinton and Salakhutdinov. "Reducing the Dimensionality of Data with Neural Networks."
Science 2006.
Vincent, Larochelle, Bengio, Manzagol. "Extracting and Composing Robust Features with
Denoising Autoencoders." ICML 2008.

    x~ = corrupt(x)                  (N, C, H, W), x~ = x for the plain autoencoder
    x^ = g(f(x~))                    f the backbone (N, D), g a ConvDecoder back to (N, C, H, W)
    loss = ||x^ - x||^2 / (C H W)    the CLEAN image is the target, in to_float's space

Hinton and Salakhutdinov trained a deep fully connected autoencoder (784-1000-500-250-30
on MNIST), initialised by greedy layer-wise pretraining of stacked RBMs and then
fine-tuned end to end. Here the encoder is a course backbone and the code its pooled
features (128 numbers for the ConvNet), decoded by a small conv net; :func:`pretrain_layerwise`
is the greedy stage, with a small autoencoder per block in place of each RBM (the variant of
Bengio, Lamblin, Popovici, Larochelle, NIPS 2007).
Vincent et al. corrupt the input so that copying it is not enough: "masking noise" sets a
fraction nu of the input components (here every channel of every pixel) to 0, which in
[0, 1] image space is black; additive Gaussian noise is the other usual corruption
(Vincent et al., JMLR 2010). The paper compares several destruction fractions; the default
here is 25%.

:class:`ReconstructionTask` is what every task that regenerates the image shares (the
decoder and the MSE); inpainting and super-resolution are the same recipe with another
corruption: a missing region, a lost resolution.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..models.decoders import ConvDecoder, image_channels
from ..transforms import check_generator, check_images, from_float, normalize, to_float
from ..utils import check_dim, check_positive, check_weight, eval_mode
from .pretext import PretextTask

NOISES = ("none", "mask", "gaussian")


def check_noise(noise: str, level: float) -> tuple[str, float]:
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    if noise == "mask" and (isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level < 1):
        raise ValueError(f"level must be the masked fraction, a number in [0, 1), for noise='mask', got {level!r}")
    return noise, check_weight(level, "level")


def corrupt_images(images: torch.Tensor, generator: torch.Generator, noise: str = "mask", level: float = 0.25):
    """uint8 (N, C, H, W) -> (corrupted inputs, clean targets), both normalised as ``to_float``.

    ``noise="mask"``: in each image exactly round(level * C * H * W) components, drawn at
    random, are set to 0 (black) before normalising; ``level`` is a fraction in [0, 1).
    ``noise="gaussian"``: N(0, level^2) is added to every component of the [0, 1] image.
    ``noise="none"``: the input is the target itself (the plain autoencoder).
    """
    check_images(images)
    check_generator(generator)
    noise, level = check_noise(noise, level)
    unit = to_float(images, mean=0.0, std=1.0)                            # (N, C, H, W) in [0, 1]
    targets = normalize(unit)
    if noise == "none":
        return targets, targets
    n, shape = len(unit), unit.shape[1:]
    if noise == "mask":
        per_image = unit[0].numel()
        drop = torch.rand(n, per_image, generator=generator).argsort(dim=1)[:, :round(level * per_image)]
        mask = torch.zeros(n, per_image, dtype=torch.bool).scatter_(1, drop, True)   # exactly k per image
        noisy = unit.masked_fill(mask.view(n, *shape).to(unit.device), 0.0)
    else:
        noisy = unit + level * torch.randn(unit.shape, generator=generator).to(unit.device)
    return normalize(noisy), targets


class ReconstructionTask(PretextTask):
    """Backbone features -> :class:`ConvDecoder` -> an image like the input, scored by MSE.

    Subclasses make the (inputs, targets) pair; the decoder reads only the pooled features.
    """
    # Batch 64 (PretextTask's default is 128): on 2,000 world images at 16 px, 8 epochs at batch 32
    # or 64 left better features (kNN, linear probe) than at 128, for the same number of images seen.
    defaults = {**PretextTask.defaults, "batch_size": 64}

    def __init__(self, backbone, image_size: int = 32, decoder_width: int = 64):
        super().__init__(backbone)
        self.image_size = check_dim(image_size, "image_size")
        self.decoder_width = check_dim(decoder_width, "decoder_width")
        self.decoder = ConvDecoder(backbone.out_dim, image_channels(backbone), image_size, decoder_width)

    def predict(self, inputs):
        return self.decoder(self.backbone(inputs))                        # (N, C, H, W)

    def loss(self, predictions, targets):
        return F.mse_loss(predictions, targets)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator):
        """uint8 images -> (input, prediction, target), float images in [0, 1] for pictures: what the
        network was shown, what it drew and what it should have drawn, in eval mode."""
        check_images(images)
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"this {self.name} was built for {self.image_size} px images, "
                             f"got shape {tuple(images.shape)}")
        with eval_mode(self):
            inputs, targets = self.make_pseudo_labels(images, generator)
            predictions = self.predict(inputs)
        clean = targets[0] if isinstance(targets, tuple) else targets     # inpainting's targets carry the mask too
        return tuple(from_float(x) for x in (inputs, predictions, clean))

    def hparams(self):
        return {"image_size": self.image_size, "decoder_width": self.decoder_width}


class Autoencoder(ReconstructionTask):
    name = "autoencoder"
    paper = "Hinton, Salakhutdinov. Reducing the Dimensionality of Data with Neural Networks. Science 2006."
    summary = "reconstruct the image from the backbone's pooled features through a conv decoder (MSE)"
    corruption = ("none", 0.0)   # (noise, level) when the constructor is given none

    def __init__(self, backbone, image_size: int = 32, decoder_width: int = 64, noise: str | None = None,
                 level: float | None = None):
        """``noise`` and ``level`` as in :func:`corrupt_images`; unset, the class's ``corruption``:
        none for the autoencoder, masking 25% for the denoising one."""
        super().__init__(backbone, image_size, decoder_width)
        self.noise, self.level = check_noise(self.corruption[0] if noise is None else noise,
                                             self.corruption[1] if level is None else level)

    def make_pseudo_labels(self, images, generator):
        return corrupt_images(images, generator, self.noise, self.level)

    def hparams(self):
        return {**super().hparams(), "noise": self.noise, "level": self.level}


class DenoisingAutoencoder(Autoencoder):
    name = "denoising_autoencoder"
    paper = ("Vincent, Larochelle, Bengio, Manzagol. Extracting and Composing Robust Features with Denoising "
             "Autoencoders. ICML 2008.")
    summary = "reconstruct the clean image from a copy with 25% of its values masked to black (MSE)"
    corruption = ("mask", 0.25)  # one of the destruction fractions the paper compares


# ---------------------------------------------------------------- greedy layer-wise pretraining

def block_decoder(block_output: torch.Tensor, block_input: torch.Tensor) -> nn.Sequential:
    """A block's own small decoder: resize its output map back to its input's size, one 3x3 conv."""
    return nn.Sequential(nn.Upsample(size=tuple(block_input.shape[-2:]), mode="nearest"),
                         nn.Conv2d(block_output.shape[1], block_input.shape[1], 3, padding=1))


@torch.no_grad()
def _reconstruction_loss(frozen, block, decoder, images, batch_size, device) -> float:
    total = 0.0
    for start in range(0, len(images), batch_size):
        h = frozen(to_float(images[start:start + batch_size].to(device)))
        total += F.mse_loss(decoder(block(h)), h, reduction="sum").item() / h[0].numel()
    return total / len(images)


def pretrain_layerwise(backbone: nn.Module, images: torch.Tensor, epochs_per_block: int = 2, batch_size: int = 128,
                       lr: float = 1e-3, seed: int = 0, device="cpu") -> list[list[float]]:
    """Greedy layer-wise pretraining, as in Hinton and Salakhutdinov 2006 (autoencoders for RBMs).

    Block b learns to reconstruct its own input, the output of the blocks below it, which
    stay frozen (eval mode, no gradient):

        h = blocks[:b](x)                       frozen, h = x for the first block
        loss_b = MSE(decoder_b(blocks[b](h)), h)  decoder_b: :func:`block_decoder`

    ``backbone`` (any with ``.blocks``) is trained in place; ``images`` are uint8 (N, C, H, W).
    Returns, per block, its reconstruction MSE over ``images`` (eval mode) before training and
    after each of its ``epochs_per_block`` epochs. Batches come from a generator seeded by ``seed``.
    """
    check_images(images)
    if not hasattr(backbone, "blocks"):
        raise TypeError(f"pretrain_layerwise needs a backbone with .blocks, got a {type(backbone).__name__}")
    epochs_per_block, batch_size = check_dim(epochs_per_block, "epochs_per_block"), check_dim(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    was_training = backbone.training
    backbone.to(device)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for b, block in enumerate(backbone.blocks):
        frozen = nn.Sequential(*backbone.blocks[:b]).eval()                       # identity for b = 0
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + b)                     # the decoders' initial weights come from the seed too
            sample = frozen(to_float(images[:2].to(device)))
            decoder = block_decoder(block.eval()(sample), sample).to(device)
        optimizer = torch.optim.AdamW([*block.parameters(), *decoder.parameters()], lr=lr)
        history = [_reconstruction_loss(frozen, block.eval(), decoder.eval(), images, batch_size, device)]
        for _ in range(epochs_per_block):
            block.train(), decoder.train()
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images) - batch_size + 1, batch_size):   # full batches: batch norm
                with torch.no_grad():
                    h = frozen(to_float(images[order[start:start + batch_size]].to(device)))
                loss = F.mse_loss(decoder(block(h)), h)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            history.append(_reconstruction_loss(frozen, block.eval(), decoder.eval(), images, batch_size, device))
        losses.append(history)
    backbone.train(was_training)
    return losses
