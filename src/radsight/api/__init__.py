"""HTTP: the FastAPI application, authentication and the REST API."""
