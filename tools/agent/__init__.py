"""The agent loop on the environment: one question played with any OpenAI-compatible model, runs of many
(teacher trajectories, evaluation) and their report."""
