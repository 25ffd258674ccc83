"""Rewards for long-video navigation rollouts: components, their registry, presets and verl's entry point."""
