"""Japanese recipe text-to-image search on Elasticsearch."""

__version__ = "0.1.0"
