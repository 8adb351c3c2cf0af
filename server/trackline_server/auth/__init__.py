"""Identity and permissions: who a call is (a token's principal) and what it may reach.

- ``roles``: the three roles and the permission each RPC needs of them;
- ``principal``: the principal of a call and its scope of experiments and models;
- ``permissions``: the one table RPC -> permission and where the call names its resource;
- ``tokens`` and ``service``: the tokens in the store and TokenService;
- ``authenticator`` and ``interceptor``: tokens checked in front of every service;
- ``scopes``: the scope of a call checked against the resources its request names.
"""
