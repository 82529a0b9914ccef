"""inferbench: how fast, how hungry and how accurate a vision model is in each deployment format."""

__version__ = "0.1.0"
