"""HTTP API (flask-smorest): blueprints, schemas, access checks, error mapping."""
