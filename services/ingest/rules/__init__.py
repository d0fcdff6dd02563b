"""The validation rules, one module per group (the first part of each rule's name)."""
