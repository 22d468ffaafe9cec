"""loopengt's core, with no MCP in it: the loop spec (`spec`, `validation`), the pure engine that decides a
run's next events (`engine`, `patterns`, `gates`), the typed events (`events`) and the fold that makes a
run's state from them (`state.apply`), what callers see (`view`), and the service that loads a run, decides
under its lock, appends to a store and answers (`runs.Runs`, over `store.Store`). loopengt_server serves it
over MCP, the CLI and editor hooks; tests/test_layering.py holds the import rules.
"""
