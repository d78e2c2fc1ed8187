"""The gateway's endpoints, one mixin per area; GatewayService combines them.

Each mixin's methods are declared with :func:`services.gateway.api.endpoint`
and may use the service's dependencies (``self.db``, ``self.gateway`` and
the RPC proxies named in ``service.py``).
"""
