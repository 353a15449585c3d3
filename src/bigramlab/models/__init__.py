"""The models: the counted ones (counted: additive smoothing, kneser_ney), the learned one
(features, losses, learned: its LightningModule; checkpoint: reading it back without Lightning),
and words sampled from any of them (sampling).
"""
