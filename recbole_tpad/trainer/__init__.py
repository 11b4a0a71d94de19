"""Trainers of the plugin, found by the name <Model>Trainer."""
