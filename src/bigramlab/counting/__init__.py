"""Counting: bigram counts of pairs and of a corpus read in pieces (bigrams), contexts of k tokens
as integer keys and the (k+1)-gram counts of a corpus per split (ngrams).
"""
