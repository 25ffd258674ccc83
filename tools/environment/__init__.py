"""The agent's environment, the bottom layer: caption-tree geometry, the action and answer grammar,
caption trees, the navigation tools, frames, the VLM client, tool settings and the verl-tool server."""
