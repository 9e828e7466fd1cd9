"""sslcourse: self-supervised learning from scratch, runnable on a laptop CPU."""

__version__ = "0.1.0"
