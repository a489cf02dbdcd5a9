"""Everything between a user and the stages: the console scripts, Hydra callbacks, typo hints."""
