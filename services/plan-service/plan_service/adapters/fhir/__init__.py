"""FHIR R4 adapters of the plan (issue 12): the shared naming systems (systems.py), the export
of a plan as a Bundle (export.py) and the ingest of FHIR resources as plan events (ingest.py).
The mapping contract is .wip/fhir-mapping.md."""
