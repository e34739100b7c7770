"""notification-service: turns plan events and the passing of time into prompts for coordinators."""
