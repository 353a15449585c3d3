"""The comparison of two language models: the metrics (pure tensor functions, `compare`) and the
figures (heatmaps, NLL curves) that bigramlab.training.comparison writes to TensorBoard.
"""
