"""The commands' plumbing: Hydra's entry point and the one failure policy (cli), the configs'
location, resolvers and value checks (config).
"""
