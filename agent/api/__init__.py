"""The app, its routes, the wire schemas, auth, errors -> HTTP, and text rendering.

The HTTP edge: it may import the services and everything below them, never the command line.
"""
