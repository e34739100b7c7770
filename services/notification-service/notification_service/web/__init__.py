"""Entry points: the Flask app factory, the server, the worker, the command line."""
