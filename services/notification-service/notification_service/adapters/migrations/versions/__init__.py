"""notification-service's revisions of its store (one branch)."""
