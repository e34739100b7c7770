"""Use cases of plan-service: one method per use, over the event-sourced IndividualPlan."""
