"""nlpstd: a standard, reproducible life cycle for BERT-family NLP models."""

__version__ = "0.1.0"
