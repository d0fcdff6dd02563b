"""The BentoML side of deployment: the service class, and the plain code it calls."""
