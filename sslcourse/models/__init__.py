"""Backbones and heads."""
from .backbones import BACKBONES, ConvNet, ResNet18, build_backbone
from .heads import MLPHead, PredictionHead, ProjectionHead

__all__ = ["BACKBONES", "ConvNet", "MLPHead", "PredictionHead", "ProjectionHead", "ResNet18", "build_backbone"]
