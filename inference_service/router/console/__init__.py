"""The ops console: a dashboard at ``/ui``, static files served by the router itself (no build, no CDN)."""
