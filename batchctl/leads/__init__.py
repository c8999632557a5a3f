"""Lead files: reading CSV, normalising phone numbers, and turning a file into a batch."""
