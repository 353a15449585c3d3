"""What the package writes, below every model: files written whole or not at all (atomic),
marked blocks of Markdown pages (markdown), TensorBoard summaries and PNG figures (tensorboard).
"""
