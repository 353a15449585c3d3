"""The comparison of the learned and the counted model: the metrics (pure tensor functions), the
TensorBoard report that writes them at every validation, and its figures.
"""
