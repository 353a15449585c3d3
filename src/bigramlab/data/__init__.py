"""The data: where words come from (corpora, download), the vocabulary and the splits by word
(vocab), and the batches a context length trains on (batches).
"""
