"""The runs service's parts, each with one job; `loopengt_core.runs.Runs` composes them.

`loaded` (a run as the service holds it), `inputs` (tool arguments: specs, inputs, paths),
`binding` (the run's files in git), `worktree_steps` (isolated steps' worktrees and joins).
"""
