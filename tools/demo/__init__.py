"""Demo fixtures built offline: the demo world (videos, caption trees, questions, trajectories), the tiny model."""
