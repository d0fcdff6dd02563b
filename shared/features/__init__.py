"""Declared feature engineering: derived-column expressions and the transformers that apply them."""
