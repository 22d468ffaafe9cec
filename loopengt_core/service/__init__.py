"""The runs service's parts, each with one job; `loopengt_core.service.runs.Runs` composes them.

`kernel` (load, decide under one lock, append, answer), `loaded` (a run as the service holds it),
`inputs` (tool arguments: specs, inputs, paths), `binding` (the run's files in git), `worktree_steps`
(isolated steps' worktrees and joins), `forks` (checkpoints, resumes, forks), `starting` (a new run),
`submitting` (a task's output), `async_submit` (a step from an event loop: the lock protocol).
"""
