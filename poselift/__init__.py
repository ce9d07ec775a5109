"""poselift: temporally consistent 3D human pose lifting from 2D keypoints (Hossain & Little, ECCV 2018)."""

from poselift.lifter import Lifter, load_lifter
from poselift.model import FrameLifter, LifterConfig, Seq2SeqLifter

__all__ = ["FrameLifter", "Lifter", "LifterConfig", "Seq2SeqLifter", "load_lifter"]
__version__ = "0.1.0"
