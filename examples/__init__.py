"""Example clients of the Akson platform."""
