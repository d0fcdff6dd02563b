"""The console: a browser view of Conveyor's events and APIs, with the approver's actions."""
