"""The agent's world and what is built on it, one subpackage a layer, bottom first.

`environment` (caption trees, the action grammar, the tools, the verl-tool server) is the bottom
layer; `rewards` (a package of its own) sits on it; then `builders` (caption trees, SFT and RL
datasets, the chat template), `agent` (the agent loop, teacher trajectories, evaluation) and
`rollouts` (the RL preflight), and `demo` (the offline demo world and tiny model). tests/test_layers.py
holds the order and fails on an import against it.
"""
