"""Built-in plugins. They register through the same hook as installed plugins."""
