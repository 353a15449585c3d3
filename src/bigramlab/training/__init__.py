"""Lightning's side of a run: the module that trains a net (module), the data module that serves
it counts and batches (datamodule), the callbacks for step losses and divergence, the last step
validated, last.ckpt, the progress bar and metrics.json (callbacks, results), and the comparison
with the counted model in TensorBoard (comparison).
"""
