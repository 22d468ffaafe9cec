"""The web view of runs: `loopengt ui`, or /ui in the streamable-HTTP server (see `web` and `serve`)."""
