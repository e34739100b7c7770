"""Entry points: the Flask app factory, the WSGI server and the command line."""
