"""What is set, never computed: settings, provider profiles, Celery configuration."""
