"""The rollout viewer: one self-contained HTML page for an agent run, the RL preflight or the RL trainer's dumps."""
