"""Counting: bigram counts of pairs and of a corpus read in pieces (bigrams), the (k+1)-gram
counts of a corpus per split (ngrams), merged across processes (shards), their keys sorted by the
faster of numpy's and torch's sorts on this machine (sorting).
"""
