"""Deploy checks: deploy/docker-compose.yml and deploy/Dockerfile, read as text (no Docker)."""
