"""RMBG-1.4 (IS-Net) for single-image background removal."""
from matting.rmbg.isnet import BriaRMBG
from matting.rmbg.loading import load_rmbg

__all__ = ["BriaRMBG", "load_rmbg"]
