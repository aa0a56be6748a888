"""The REST API in Cloudflare's Workers Builds v4 shape, mounted at /client/v4/.

envelope: the response envelope and the one exception handler; authentication: bearer
tokens (and the dashboard session); permissions: account membership and roles, and
the per-token rate limit; serializers; schema: OpenAPI descriptions; views; urls."""
