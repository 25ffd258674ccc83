"""The navigation environment and the builders of models and datasets it needs."""
