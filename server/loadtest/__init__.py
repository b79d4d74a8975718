"""The load-test tool shipped with the server: `python -m server loadtest --help`."""
