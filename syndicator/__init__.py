"""syndicator: per-region and per-topic feeds and email digests for customs news."""

__version__ = "0.1.0"
