"""Lightning's side of a run: the callbacks for step losses and divergence, the last step
validated, last.ckpt, and the progress bar.
"""
