"""Robust Video Matting (MobileNetV3) in plain PyTorch, loading the official checkpoint."""
from matting.rvm.loading import REFINER_CHOICES, load_rvm
from matting.rvm.network import MattingNetwork

__all__ = ["REFINER_CHOICES", "MattingNetwork", "load_rvm"]
