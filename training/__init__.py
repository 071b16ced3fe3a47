"""Offline training pipelines that export the service's SavedModels into ``models/``."""
