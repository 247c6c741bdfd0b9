"""Running scorers on evaluation tasks."""
