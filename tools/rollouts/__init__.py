"""The RL preflight (`python -m launch rollouts`): real rollouts through verl-tool's own agent loop.

The policy is served by vLLM (`policy_client`), verl-tool's `AgentLoopWorker` plays the questions
against our tool server and scores them with verl's reward manager (`sample`), verl's `core_algos`
computes the GRPO advantages, and `records` and `report` write what a researcher reads before an RL
run. `python -m tools.rollouts --settings FILE --output DIR` runs it.
"""

# The file of the output folder that holds one record per rollout (`records.rollout_records`).
RECORDS_FILE = "rollouts.jsonl"
