"""The note's Gaussian half: the normal distribution's density, likelihood and closed-form MLE
(gaussian), and μ, σ fitted by gradient descent on the NLL as a Lightning module with its pictures
(fit), which `python -m bigramlab.likelihood` runs."""
