"""HTTP API (flask-smorest): the coordinator's inbox."""
