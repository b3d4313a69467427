"""Physical removal of units: a new, smaller model, no masks."""

from layerprune.surgery.remove import remove_units

__all__ = ["remove_units"]
