"""The reward audit: scripted policies played through the real tool and scored by the real reward, with its report."""
