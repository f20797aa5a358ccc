"""Membership-inference attacks: population MIA on losses (spec E.2) and per-sample U-LiRA (spec G)."""

from deepunlearn.attacks.mia import mia

__all__ = ["mia"]
