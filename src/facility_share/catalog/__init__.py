"""The open catalogue: units, categories, resources, fee schedules; files, import, search, export."""
