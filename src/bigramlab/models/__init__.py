"""The models, each a LanguageModel (lm: the interface, and the NLL of counts and words over it):
the counted ones (counted: their base and additive smoothing; kneser_ney; smoothing: the one a
config names), the learned one (learned: LearnedLM, an nn.Module; learned_arpa: its ARPA listing;
features: its rows; losses: its objective and penalty; checkpoint: reading it back without
Lightning), the NLL of log-probabilities on counts (nll) and words sampled from any of them
(sampling).
"""
