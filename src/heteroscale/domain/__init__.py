"""Pure value types. Imports nothing else of HeteroScale's."""
