"""The models: the counted ones (counted: their interface and additive smoothing; kneser_ney;
smoothing: the one a config names), the learned one (learned: LearnedLM, an nn.Module; features:
its rows; losses: its objective; checkpoint: reading it back without Lightning), their NLL on
counts (nll) and words sampled from any of them (sampling).
"""
