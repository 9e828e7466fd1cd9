"""Backbones and heads."""
from .backbones import BACKBONES, ConvNet, ResNet18, build_backbone
from .decoders import ConvDecoder
from .heads import MLPHead, PredictionHead, ProjectionHead
from .vit import ViT

__all__ = ["BACKBONES", "ConvDecoder", "ConvNet", "MLPHead", "PredictionHead", "ProjectionHead", "ResNet18",
           "ViT", "build_backbone"]
