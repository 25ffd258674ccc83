"""Builders on the environment and rewards: caption trees, annotations, the SFT and RL datasets, the chat template."""
