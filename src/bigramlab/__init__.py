"""bigramlab: a character-level language model trained by gradient descent on the negative log
likelihood, compared at every step with the model that counting gives (the MLE and its smoothed
and Kneser–Ney forms), with longer contexts and multi-hot features; config-driven (Hydra),
trained by Lightning, reported to TensorBoard.

The commands are modules: `python -m bigramlab.train`, `.sample`, `.evaluate`, `.export`,
`.likelihood`. docs/architecture.md draws the path of a run through the package.
"""

# The one place the version is written: pyproject.toml reads it (tool.setuptools.dynamic), and
# every run's metrics.json records it. CHANGELOG.md says what each version changed.
__version__ = "0.2.0"
