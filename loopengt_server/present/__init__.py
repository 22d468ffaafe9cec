"""How runs are put to a person: wording shared by the CLI, the headless driver and the web view, and
the one-line description of each event that `follow` prints."""
