"""The data: where words come from (corpora, download), the vocabulary and the splits by word
(vocab), and the Lightning data module that serves counts and batches (datamodule).
"""
